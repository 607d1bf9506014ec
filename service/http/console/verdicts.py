"""What a results page says in words: for each arm, what its figures support deciding, and what stands in the way.

Figures alone left a PM to connect a significant primary metric with a failing guardrail, or to notice
that a winning arm had nine users. These sentences say it once, from the same answer the table shows;
they never compute a figure of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from experiments.definitions import LIVE, RETENTION_DAYS
from experiments.stats.ipw import FEW_EFFECTIVE_USERS
from service.http.console import formatting as fmt
from service.usecases import results

Tone = Literal["ok", "warn", "info"]
# Below this many users in an arm or the control a significant difference rests on a handful of people
# (a winner of 16 users, 8 converted, against 1,084): the page says so rather than "beats".
FEW_USERS = 30


@dataclass(frozen=True)
class Verdict:
    """One sentence, and how the page marks it."""

    tone: Tone
    text: str


def verdicts(
    answer: dict[str, Any], lower_is_better: bool, rough: set[str], guardrail_kinds: dict[str, str],
) -> list[Verdict]:
    """The page's reading of `answer`: a warning that overrides everything first, then one sentence per arm."""
    arms = answer["arms"]
    if len(arms) < 2 or not any(a["users"] for a in arms[1:]) or not arms[0]["users"]:
        return [Verdict("info", _nothing_yet(answer["metric"], answer["status"] == "stopped"))]
    out = _overall(answer)
    silent = _never_reported(answer)
    if silent:
        out.append(Verdict("warn", silent))
    if answer["type"] == "bandit":
        if answer.get("safe_to_compare") == []:  # the floor is 0 (see results.py)
            out.append(Verdict("warn", "This bandit's floor (min_probability) is 0, so its policy could give an arm no chance at all with some "
                                       "users: neither its naive nor its weighted (IPW) figures compare the arms without bias. Set a floor above 0 "
                                       "in the next experiment, or run an A/B test, to compare them."))
            return out
        out.append(Verdict("info", "A bandit moves users to the arms doing best, so its naive comparisons are biased; compare arms by their IPW "
                                   "figures and watch where the allocation settles."))
        leader = _ipw_leader(answer, lower_is_better)
        if leader is not None:
            out.append(leader)
        return out
    kind, metric = answer["metric_kind"], answer["metric"]
    final = answer["status"] == "stopped"
    corrected = answer.get("correction") != "none"
    split_off = bool((answer.get("srm") or {}).get("mismatch"))
    for a in arms[1:]:
        own = [g for g in answer.get("guardrails") or [] if g["arm"] == a["arm"]]
        hurt = [f"{g['metric']} {fmt.difference(g['diff'], guardrail_kinds.get(g['metric'], 'number'))}"
                for g in own if g.get("status") == "fail"]
        # Without an interval nothing shows a guardrail failing, and nothing shows it holding (the API's "ok"); a "warn"
        # says only that its difference leans the worse way so far.
        unread = [g["metric"] + (", worse so far" if g.get("status") == "warn" else "") for g in own if g.get("diff_ci") is None]
        out.append(_arm(a, arms[0], kind, metric, lower_is_better, a["arm"] in rough, final, ", ".join(hurt), unread, bool(own), corrected, split_off))
    return out


def _ipw_leader(answer: dict[str, Any], lower_is_better: bool) -> Verdict | None:
    """Which arm a bandit's IPW estimates put first, and whether its interval clears every other arm's."""
    estimated = [a for a in answer["arms"] if a.get("ipw_mean") is not None and a.get("ipw_ci") is not None]
    if len(estimated) < 2:
        return None
    kind = answer["metric_kind"]
    best = (min if lower_is_better else max)(estimated, key=lambda a: a["ipw_mean"])
    others = [a for a in estimated if a is not best]
    said = f"By the IPW estimates {best['arm']} leads on {answer['metric']} ({fmt.mean(best['ipw_mean'], kind)} {fmt.interval(best['ipw_ci'], kind)})"
    few = best.get("ipw_effective_users") is not None and best["ipw_effective_users"] < FEW_EFFECTIVE_USERS
    if few:
        return Verdict("warn", f"{said}, but on about {fmt.num(round(best['ipw_effective_users']))} effective users: too few to call it best yet.")
    low, high = best["ipw_ci"]
    overlapping = [a["arm"] for a in others if not (high < a["ipw_ci"][0] if lower_is_better else low > a["ipw_ci"][1])]
    if not overlapping:
        return Verdict("ok", f"{said}, and its interval clears every other arm's: the best arm on this metric so far.")
    return Verdict("info", f"{said}; its interval overlaps {', '.join(overlapping)}'s, so no arm is clearly best yet.")


# From how many exposed users a metric that no one has is more likely unreported than rare.
SILENT_USERS = 200


def _never_reported(answer: dict[str, Any]) -> str | None:
    """A binary metric nobody has among many users: more often a storefront that does not send it than a rare event."""
    arms, metric = answer["arms"], answer["metric"]
    users = sum(a["users"] for a in arms)
    if answer["metric_kind"] != "binary" or users < SILENT_USERS or any(a["total"] for a in arms):
        return None
    source = ("purchase events (POST /v1/events, type purchase)" if metric == "purchase_conversion"
              else "events after each user's exposure" if metric in RETENTION_DAYS
              else f"outcomes (POST /v1/outcomes with metric {metric!r})")
    return (f"No user of any arm has {metric} yet, among {users:,} exposed: if it is not that rare, check that the storefront sends "
            f"{source} for these users.")


def _nothing_yet(metric: str, final: bool) -> str:
    days = RETENTION_DAYS.get(metric)
    if final:  # no user can join a stopped experiment, nor grow old enough for it
        users = f"users whose day-{days} window closed before the stop" if days is not None else "exposed users"
        return f"Nothing to decide: the experiment stopped before an arm and the control both had {users}."
    if days is not None:  # its users are those whose day N has ended
        return (f"Nothing to decide yet: {metric} counts a user once their day-{days} window has closed, and an arm and the control "
                f"both need users exposed {days + 1} or more days ago.")
    return "Nothing to decide yet: an arm and the control both need exposed users."


def _overall(answer: dict[str, Any]) -> list[Verdict]:
    out = []
    srm = answer.get("srm")
    if srm and srm.get("mismatch"):
        out.append(Verdict("warn", "Do not decide on these figures: the arms' sizes do not match their weights (sample ratio mismatch), "
                                   "so something other than the arm may separate them."))
    # A bandit's intervals are naive whichever kind they are, so sequential ones would not make them safe to read.
    if answer["status"] in LIVE and answer["type"] != "bandit" and not answer["test"].endswith("_sequential"):
        out.append(Verdict("info", "These intervals hold for one look at a planned sample size. If you check them every day, switch on "
                                   "sequential intervals (above), which stay valid however often you look."))
    if answer["status"] == "stopped":
        out.append(Verdict("info", "The experiment has stopped: these figures measure what users did before the stop. Outcomes and events dated before it still count when they arrive late; nothing dated after it does."))
        if answer["type"] != "bandit" and not answer["test"].endswith("_sequential"):
            # The commonest way to a false winner: stopping the day a fixed-horizon p-value first dips below alpha.
            out.append(Verdict("warn", "These intervals hold for one look at a planned sample size. If the experiment was stopped before "
                                       "reaching it because a result looked significant, they overstate the evidence: switch on "
                                       "sequential intervals (above), which stay valid however early it stopped."))
    return out


def _priced(a: dict[str, Any], c: dict[str, Any], kind: str, final: bool) -> str:
    """What the arm's extra conversions cost in points, or why that is not known yet."""
    # An arm without a schedule grants nothing by design: its cost is 0, known. One with a schedule that
    # has paid nothing for its actions may owe it later (the API's note says which).
    silent = [arm["arm"] for arm in (a, c) if results.NO_REWARD_ACTIONS in arm.get("notes", ())]
    if silent:  # its 0 points are a storefront that has not reported the actions, not a free schedule
        return f" What it costs is not known yet: no reward action has been recorded for the users of {' or '.join(silent)}."
    unpaid = [arm["arm"] for arm in (a, c) if results.UNPAID in arm.get("notes", ())]
    if unpaid:  # a schedule that rewards every Nth action, or after an interval, owes its points later
        return (f" What it costs is not known yet: {' and '.join(unpaid)} recorded reward actions but granted no points so far, "
                "as a schedule that pays on every Nth action or after an interval does at first.")
    cost = a.get("cost_per_incremental")
    if cost is None:
        return ""
    unit = "conversion" if kind == "binary" else "unit"
    so_far = "" if final else " so far"
    if cost >= 0:
        return f" It has cost{so_far} {fmt.num(cost)} points per extra {unit}."
    # Better and cheaper: a ratio of a saving to a gain grows as the gain shrinks, so the saving per user says it plainly.
    saved = c["points_per_user"] - a["points_per_user"]
    return f" It is also cheaper: it has granted {fmt.num(saved)} fewer points per user than {c['arm']}{so_far}."


def _arm(
    a: dict[str, Any], c: dict[str, Any], kind: str, metric: str, lower_is_better: bool, rough: bool, final: bool, hurt: str, unread: list[str],
    guarded: bool, corrected: bool = True, split_off: bool = False,
) -> Verdict:
    """One arm's sentence; `hurt` names the guardrails it fails, which every reading mentions, `unread` those without evidence
    either way, `guarded` whether the experiment declares any, `corrected` whether p-values are adjusted for several comparisons,
    and `split_off` whether the arms' sizes fail the sample ratio check, which leaves no winner to name."""
    name, control = a["arm"], c["arm"]
    significant, p = ("significant after correction", "adjusted ") if corrected else ("significant (no correction asked for)", "")
    if not a["users"]:
        return Verdict("info", f"{name}: no exposed users{'' if final else ' yet'}.")
    fails = f" It also fails a guardrail ({hurt})." if hurt else ""
    shown = f"{fmt.difference(a['diff'], kind)} {fmt.difference_interval(a['diff_ci'], kind)}".strip()
    if rough:
        return Verdict("warn", f"{name}: too few conversions or non-conversions (in it or the control) to judge; its interval "
                               f"can be far narrower than the data allow.{'' if final else ' Wait for more users.'}{fails}")
    if not a.get("significant"):
        said = f"{name}: no difference from {control} on {metric} shown{'' if final else ' yet'} ({shown}, {p}{fmt.p_is(a['p_value_adjusted'])}).{fails}"
        return Verdict("warn" if hurt else "info", said)
    better = (a["diff"] < 0) if lower_is_better else (a["diff"] > 0)
    if split_off:
        return Verdict("warn", f"{name} {'looks better' if better else 'looks worse'} than {control} on {metric} ({shown}), but with the "
                               f"arms' sizes off their weights this difference may come from whatever enrols users unevenly, not "
                               f"from the arm: find that cause before deciding.{fails}")
    if not better:
        return Verdict("warn", f"{name} is worse than {control} on {metric}: {shown}.{fails}")
    priced = _priced(a, c, kind, final) if not lower_is_better and a["diff_ci"] and a["diff_ci"][0] > 0 else ""
    few = [arm for arm in (a, c) if arm["users"] < FEW_USERS]
    if few:
        who = " and ".join(arm["arm"] for arm in few)
        sizes = " and ".join(f"{arm['users']:,}" for arm in few)
        return Verdict("warn", f"{name} beats {control} on {metric} ({shown}), but {who} {'has' if len(few) == 1 else 'have'} only "
                               f"{sizes} users: a result this "
                               f"small moves with a few users either way; {'confirm it with more users' if final else 'wait for more users'} "
                               f"before rolling {name} out.{fails}{priced}")
    if hurt:
        return Verdict("warn", f"{name} beats {control} on {metric} ({shown}) but fails a guardrail ({hurt}): weigh the two before rolling it out.{priced}")
    if unread:
        several = len(unread) > 1
        return Verdict("warn", f"{name} beats {control} on {metric}: {shown}, {significant}, but its guardrail{'s' if several else ''} "
                               f"({', '.join(unread)}) {'have' if several else 'has'} no evidence yet either way: "
                               f"wait until {'they' if several else 'it'} can be read before rolling {name} out.{priced}")
    guardrails = "no guardrail fails" if guarded else "no guardrails are set"
    return Verdict("ok", f"{name} beats {control} on {metric}: {shown}, {significant}, and {guardrails}.{priced}")
