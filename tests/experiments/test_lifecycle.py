"""The lifecycle table and what is derived from it."""
from __future__ import annotations

import pytest

from experiments.definitions import LIVE, TransitionError, transition


def test_live_statuses_are_those_started_and_not_stopped():
    assert LIVE == ("running", "paused")
    assert all(transition(status, "stop") == "stopped" for status in LIVE)
    assert transition("draft", "start") in LIVE


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_a_status_that_is_not_live_cannot_be_stopped(status):
    with pytest.raises(TransitionError, match="cannot stop"):
        transition(status, "stop")
