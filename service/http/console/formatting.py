"""How figures read on the console's pages; templates reach these as `fmt.<name>`."""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Sequence

from experiments.numbers import finite_number
from service.text import bidi_escaped

DASH = "–"



def num(value: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits, or a dash; a whole number when it has more digits
    before the point than that (a mean revenue of 12,345.6 reads "12,346", not "1.235e+04")."""
    if not finite_number(value):
        return DASH
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    text = f"{value:,.{digits}g}"
    return f"{value:,.0f}" if "e+" in text else text


def amount(value: Any) -> str:
    """A stored amount (points, a purchase's value, their sums) to 15 significant digits, all that a double
    always holds. At `num`'s four significant digits a ledger's rows (150.46 shown as 150.5) stopped adding
    up to its balance; at the shortest decimal that reads back as the same double, a sum read as its
    rounding (28.38 as 28.380000000000003). Amounts below 1e-6 read in `num`'s exponent form rather
    than as a run of zeros."""
    if not finite_number(value):
        return DASH
    if float(value).is_integer() and abs(value) < 1e21:
        return f"{int(value):,}"
    if abs(value) < 1e-6:
        return num(value)
    # From 1e15 a double has no digits beyond 15 to spare: as stored, the shortest decimal that reads back as it.
    digits = repr(float(value)) if abs(value) >= 1e15 else f"{float(value):.15g}"
    return f"{Decimal(digits):,f}"


def pct(value: Any, signed: bool = False) -> str:
    """A share as a percentage with one decimal; a share above 0 that would round to 0.0% reads "<0.1%"."""
    if not finite_number(value):
        return DASH
    if not signed and 0 < value < 0.0005:
        return "<0.1%"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


_ROW_NUMBER = re.compile(r"[0-9]{1,9}")


def field_label(name: str) -> str:
    """A form field's path as its labels read: arms.1.schedule.every is "Arm 2 › schedule › every"."""
    parts = name.split(".")
    words: list[str] = []
    for i, part in enumerate(parts):
        # ASCII digits alone, and few: a hand-made post may name a row "²" or 5,000 nines, which int() refuses.
        if _ROW_NUMBER.fullmatch(part) and i > 0 and parts[i - 1] in ("arms", "metrics"):
            words[-1] = f"{'Arm' if parts[i - 1] == 'arms' else 'Metric'} {int(part) + 1}"
        else:
            words.append(part.replace("_", " "))
    return " › ".join(words)[:1].upper() + " › ".join(words)[1:]


def chance(value: Any) -> str:
    """A probability to beat the control: never a rounded 100.0% or 0.0%, which would read as certainty."""
    if not finite_number(value):
        return DASH
    if value > 0.999:
        return ">99.9%"
    if value < 0.001:
        return "<0.1%"
    return f"{value:.1%}"


def level(alpha: float) -> str:
    """An interval's confidence, 1 - alpha, with as many decimals as it takes to read neither 100% nor 0%."""
    decimals = max(1, math.ceil(-math.log10(alpha)) - 2, math.ceil(-math.log10(1 - alpha)) - 1) if 0 < alpha < 1 else 1
    return f"{(1 - alpha) * 100:.{decimals}f}%"


def mean(value: Any, kind: str) -> str:
    """A per-user mean: a rate for binary metrics, a number otherwise."""
    return pct(value) if kind == "binary" else num(value)


def interval(bounds: Sequence[float] | None, kind: str = "number", signed: bool = False) -> str:
    """`[low, high]` in the same form as its estimate."""
    if not bounds or len(bounds) != 2:
        return ""
    show = (lambda v: pct(v, signed)) if kind in ("binary", "percent") else num
    return f"[{show(bounds[0])}, {show(bounds[1])}]"


def clamped(bounds: Sequence[float] | None, low: float | None, high: float | None = None) -> list[float] | None:
    """An interval cut to the values its figure can take (a rate 0 to 1, a rate's lift from -100 %).

    The normal and delta-method intervals the API gives can reach past them on few conversions; the
    cut one covers the same possible values, so it claims nothing more.
    """
    if not bounds or len(bounds) != 2:
        return None
    lo, hi = bounds
    if low is not None:
        lo, hi = max(lo, low), max(hi, low)
    if high is not None:
        lo, hi = min(lo, high), min(hi, high)
    return [lo, hi]


def beyond(bounds: Sequence[float] | None, low: float | None, high: float | None = None) -> bool:
    """Whether `clamped` would cut the interval."""
    return bool(bounds) and clamped(bounds, low, high) != list(bounds)  # type: ignore[arg-type]


def difference(value: Any, kind: str) -> str:
    """An arm's difference from the control: percentage points for rates, a signed number otherwise."""
    if not finite_number(value):
        return DASH
    if kind == "binary":
        return f"{value * 100:+.1f} pp"
    text = num(value)
    return text if value < 0 or text == "0" else "+" + text


def difference_interval(bounds: Sequence[float] | None, kind: str) -> str:
    """`[low, high]` of a difference, in the same form as the difference."""
    if not bounds or len(bounds) != 2:
        return ""
    return f"[{difference(bounds[0], kind)}, {difference(bounds[1], kind)}]"


def pvalue(value: Any) -> str:
    """A p-value with four decimals; very small ones as an upper bound."""
    if not finite_number(value):
        return DASH
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def p_is(value: Any) -> str:
    """A p-value in a sentence: `p = 0.0123`, or `p < 0.0001` (not `p = < 0.0001`)."""
    shown = pvalue(value)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def when(iso: str | None) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM UTC`, in UTC whatever offset it was written with."""
    if not iso:
        return DASH
    # A multiplier's window is stored as sent: cut at the minute, 01:02+05:30 read as 01:02 UTC, 5.5 hours late.
    try:
        at = datetime.fromisoformat(iso)
        at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # past year 1 or 9999 once moved to UTC
        return iso[:16].replace("T", " ") + " UTC"
    return at.strftime("%Y-%m-%d %H:%M UTC")


_ISO_IN_TEXT = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z")


def with_times(text: str) -> str:
    """An API note with the ISO timestamps it quotes read as the page's other times are (`when`)."""
    return _ISO_IN_TEXT.sub(lambda m: when(m.group()), text)


def moment(epoch: float | None) -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM UTC`."""
    if not finite_number(epoch):
        return DASH
    return datetime.fromtimestamp(float(epoch), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # type: ignore[arg-type]


def day(iso: str | None) -> str:
    """An ISO timestamp's date."""
    return iso[:10] if iso else DASH


def json_text(value: Any) -> str:
    """Indented JSON for a textarea or a <pre>."""
    return bidi_escaped(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)) if value not in (None, {}, []) else ""


def schedule(spec: dict[str, Any] | None) -> str:
    """A reward schedule in one line: its type, parameters, action and multiplier window."""
    if not spec:
        return "no reward schedule"
    params = ", ".join(f"{k.replace('_', ' ')} {num(v)}" for k, v in spec.items() if k not in ("type", "action", "multiplier"))
    text = f"{spec.get('type', '?').replace('_', ' ')}: {params}"
    if spec.get("action", "purchase") != "purchase":
        text += f"; on {spec['action']}"
    m = spec.get("multiplier")
    if m:
        text += f"; ×{num(m.get('factor'))} from {when(m.get('start'))} to {when(m.get('end'))}"
    return text
