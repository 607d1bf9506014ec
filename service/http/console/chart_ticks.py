"""The numbers on a chart: tick values a reader can round-trip, and their labels without float noise."""
from __future__ import annotations

import math


def number(value: float) -> str:
    """Three significant digits."""
    return f"{value:.3g}"


def tick(value: float, scale: float = 1.0, suffix: str = "", sign: bool = False) -> str:
    """A tick's round value exactly, without float noise: 0.275 at scale 100 with "%" as "27.5%".

    A tick rounded as a value is (27.5 % as "28%", 12.5 pp as "+12 pp") names the wrong gridline.
    """
    text = f"{value * scale:{'+' if sign and value else ''}.12g}"
    return ("0" if text in ("0", "-0") else text) + suffix


def pp_tick(value: float) -> str:
    """A tick of differences of rates, in percentage points."""
    return tick(value, 100, " pp", sign=True)


def signed_tick(value: float) -> str:
    """A tick of differences of means."""
    return tick(value, sign=True)


def percent_tick(value: float) -> str:
    """A tick of lifts."""
    return tick(value, 100, "%", sign=True)


def percent(value: float) -> str:
    """A share as a percentage with a sign, for lifts."""
    if value == 0:
        return "0%"
    return f"{value:+.0%}" if abs(value) >= 0.1 else f"{value:+.1%}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values that cover [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    size = max(abs(low), abs(high))
    # A range too narrow to divide (one value, or values alike to 12 digits) is padded around it; one of
    # values so near 0 that a tenth of them would not stay a normal double spans -1 to 1.
    if not high - low > max(1e-12 * size, 1e-290):
        pad = size * 0.1 if size > 1e-280 else 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    # 12 significant digits clear the float noise of i * step (0.30000000000000004) at any magnitude.
    return [float(f"{i * step:.12g}") for i in range(first, last + 1)]
