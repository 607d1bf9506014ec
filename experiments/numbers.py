"""Numbers as JSON and forms deliver them: a whole number may be far past what a double holds."""
from __future__ import annotations

import math
from typing import Any, TypeGuard


def finite_number(value: Any) -> TypeGuard[int | float]:
    """An int or float that a double holds as a finite number (not a bool): math.isfinite raises on an int
    past 1e308, which JSON can carry, so a check of its own would answer a 500 instead of naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
