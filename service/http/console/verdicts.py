"""What a results page says in words: for each arm, what its figures support deciding, and what stands in the way.

Figures alone left a PM to connect a significant primary metric with a failing guardrail, or to notice
that a winning arm had nine users. These sentences say it once, from the same answer the table shows;
they never compute a figure of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from service.http.console import formatting as fmt

Tone = Literal["ok", "warn", "info"]


@dataclass(frozen=True)
class Verdict:
    """One sentence, and how the page marks it."""

    tone: Tone
    text: str


def verdicts(answer: dict[str, Any], lower_is_better: bool, rough: set[str], guardrail_kinds: dict[str, str]) -> list[Verdict]:
    """The page's reading of `answer`: a warning that overrides everything first, then one sentence per arm."""
    arms = answer["arms"]
    if len(arms) < 2 or not any(a["users"] for a in arms[1:]) or not arms[0]["users"]:
        return [Verdict("info", "Nothing to decide yet: an arm and the control both need exposed users.")]
    out = _overall(answer)
    if answer["type"] == "bandit":
        out.append(Verdict("info", "A bandit moves users to the arms doing best, so its naive comparisons are biased; compare arms by their IPW "
                                   "figures and watch where the allocation settles."))
        return out
    control, kind, metric = arms[0]["arm"], answer["metric_kind"], answer["metric"]
    final = answer["status"] == "stopped"
    for a in arms[1:]:
        own = [g for g in answer.get("guardrails") or [] if g["arm"] == a["arm"]]
        hurt = [f"{g['metric']} {fmt.difference(g['diff'], guardrail_kinds.get(g['metric'], 'number'))}"
                for g in own if g.get("status") == "fail" and not g.get("note")]
        # The API calls a guardrail without an interval "ok": nothing shows it failing, and nothing shows it holding.
        unread = [g["metric"] for g in own if g.get("diff_ci") is None]
        out.append(_arm(a, control, kind, metric, lower_is_better, a["arm"] in rough, final, ", ".join(hurt), unread))
    return out


def _overall(answer: dict[str, Any]) -> list[Verdict]:
    out = []
    srm = answer.get("srm")
    if srm and srm.get("mismatch"):
        out.append(Verdict("warn", "Do not decide on these figures: the arms' sizes do not match their weights (sample ratio mismatch), "
                                   "so something other than the arm may separate them."))
    # A bandit's intervals are naive whichever kind they are, so sequential ones would not make them safe to read.
    if answer["status"] in ("running", "paused") and answer["type"] != "bandit" and not answer["test"].endswith("_sequential"):
        out.append(Verdict("info", "These intervals hold for one look at a planned sample size. If you check them every day, switch on "
                                   "sequential intervals (above), which stay valid however often you look."))
    if answer["status"] == "stopped":
        out.append(Verdict("info", "The experiment has stopped: these are its final figures, though outcomes and events that arrive late still count."))
    return out


def _arm(a: dict[str, Any], control: str, kind: str, metric: str, lower_is_better: bool, rough: bool, final: bool, hurt: str, unread: list[str]) -> Verdict:
    """One arm's sentence; `hurt` names the guardrails it fails, which every reading mentions, and `unread` those without evidence either way."""
    name = a["arm"]
    if not a["users"]:
        return Verdict("info", f"{name}: no exposed users{'' if final else ' yet'}.")
    fails = f" It also fails a guardrail ({hurt})." if hurt else ""
    shown = f"{fmt.difference(a['diff'], kind)} {fmt.difference_interval(a['diff_ci'], kind)}".strip()
    if rough:
        return Verdict("warn", f"{name}: too few conversions or non-conversions (in it or the control) to judge; its interval "
                               f"can be far narrower than the data allow.{'' if final else ' Wait for more users.'}{fails}")
    if not a.get("significant"):
        said = f"{name}: no difference from {control} on {metric} shown{'' if final else ' yet'} ({shown}, adjusted p {fmt.pvalue(a['p_value_adjusted'])}).{fails}"
        return Verdict("warn" if hurt else "info", said)
    better = (a["diff"] < 0) if lower_is_better else (a["diff"] > 0)
    if not better:
        return Verdict("warn", f"{name} is worse than {control} on {metric}: {shown}.{fails}")
    cost = a.get("cost_per_incremental")
    unit = "conversion" if kind == "binary" else "unit"
    priced = ""
    if cost is not None and not lower_is_better and a["diff_ci"] and a["diff_ci"][0] > 0:
        # A negative cost is an arm that gains while granting fewer points per user than the control.
        priced = (f" It costs {fmt.num(cost)} points per extra {unit}." if cost >= 0
                  else f" It also grants fewer points than {control}: {fmt.num(-cost)} fewer per extra {unit}.")
    if hurt:
        return Verdict("warn", f"{name} beats {control} on {metric} ({shown}) but fails a guardrail ({hurt}): weigh the two before rolling it out.{priced}")
    if unread:
        several = len(unread) > 1
        return Verdict("warn", f"{name} beats {control} on {metric}: {shown}, significant after correction, but its guardrail{'s' if several else ''} "
                               f"({', '.join(unread)}) {'have' if several else 'has'} no evidence yet either way: "
                               f"wait until {'they' if several else 'it'} can be read before rolling {name} out.{priced}")
    return Verdict("ok", f"{name} beats {control} on {metric}: {shown}, significant after correction, and no guardrail fails.{priced}")
