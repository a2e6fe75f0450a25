"""Shared fixtures. Lives at the top so that invariants/ itself imports only model/: the
hypothesis tests hand their counterexamples to this fixture, which saves them as traces."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture
def save_counterexample() -> Callable[[Any], Path]:
    """Save a hypothesis `Violation` as an ITF trace (engine "hypothesis") under
    $ALLOCHECK_HYPOTHESIS_TRACES, default counterexamples/hypothesis/ (not committed)."""
    from search.traces.trace import save, trace_from_steps

    out = Path(os.environ.get("ALLOCHECK_HYPOTHESIS_TRACES", HERE / "counterexamples" / "hypothesis"))

    def _save(violation: Any) -> Path:
        trace = trace_from_steps(violation.system, violation.steps, violation.invariant,
                                 "hypothesis", seed=0)
        return save(trace, out)

    return _save


_FOUND: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the kernel-call sequences that the hypothesis tests found (also from
    xdist workers, whose reports carry user_properties to the controller)."""
    if report.when == "call" and report.passed:
        for name, value in report.user_properties:
            if name == "counterexample":
                _FOUND.append((report.nodeid.split("::")[-1], str(value)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FOUND:
        return
    tr = terminalreporter
    tr.section("violations found by hypothesis (shrunk)")
    for nodeid, text in sorted(_FOUND):
        tr.write_line(f"{nodeid}: {text}")
