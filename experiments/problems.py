"""An input refused for one or more reasons, all of them found in one pass."""
from __future__ import annotations

from typing import Sequence


class Problems(ValueError):
    """`field` is the path of the first bad part (as `arms.1.weight`), `message` what is wrong with it,
    and `problems` every (path, message) found, that one first."""

    def __init__(self, field_name: str, message: str, more: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{field_name}: {message}" + (f" (and {len(more)} more)" if more else ""))
        self.field = field_name
        self.message = message
        self.problems: tuple[tuple[str, str], ...] = ((field_name, message), *more)
