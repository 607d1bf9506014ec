"""Multiple-testing corrections over the treatment-vs-control p-values."""
from __future__ import annotations

from typing import Literal, Sequence, get_args

Correction = Literal["holm", "bh", "none"]
CORRECTIONS: tuple[Correction, ...] = get_args(Correction)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for position, i in enumerate(order):
        rank = m - position
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(running, 1.0)
    return adjusted


def adjust(p_values: Sequence[float | None], method: Correction) -> list[float | None]:
    """Adjust the defined p-values together; undefined ones stay None."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    values = [float(p_values[i]) for i in present]  # type: ignore[arg-type]
    if method == "holm":
        values = holm(values)
    elif method == "bh":
        values = benjamini_hochberg(values)
    elif method != "none":
        raise ValueError(f"correction must be {', '.join(CORRECTIONS[:-1])} or {CORRECTIONS[-1]}, got {method!r}")
    out: list[float | None] = [None] * len(p_values)
    for i, v in zip(present, values):
        out[i] = v
    return out
