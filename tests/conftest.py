"""Fixtures shared by the trace and graph tests."""

from __future__ import annotations

import pytest
from helpers import STALE_STEPS, TAIL_STEPS, make

from search.traces.trace import Trace


@pytest.fixture(scope="module")
def tail() -> Trace:
    """v5.18-rc1: the fbdev tail-page write, three calls."""
    return make("v5.18-rc1", TAIL_STEPS, "no_tail_as_base")


@pytest.fixture(scope="module")
def stale() -> Trace:
    """v5.18.y: a freed program's code left executable in its pack, four calls."""
    return make("v5.18.y", STALE_STEPS, "no_stale_exec")
