"""The catalog: counterexamples/ holds the shortest trace of every declared violation of
every built-in profile (`python -m search catalog`); each replays under its own profile,
and under the profile that fixed it does not, with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.profiles import PROFILES
from search.traces.graph import causal_slice, fixing_profile
from search.traces.trace import Trace, load, replay

CATALOG = Path(__file__).resolve().parent.parent / "counterexamples"
FILES = sorted(CATALOG.glob("*.itf.json"))


def test_catalog_covers_every_declared_violation() -> None:
    have = set()
    for f in FILES:
        t = load(f)
        if not t.overrides:
            have.add((t.profile, t.invariant, t.faults, t.bounds.nodes))
    want = set()
    for p in PROFILES.values():
        want |= {(p.name, inv, False, 1) for inv in p.violated}
        want |= {(p.name, inv, True, 1) for inv in p.violated_with_faults}
        want |= {(p.name, inv, False, 2) for inv in p.violated_with_nodes}
    assert want <= have, f"missing from counterexamples/: {sorted(want - have)}"


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_catalog_trace_replays(path: Path) -> None:
    trace = load(path)
    report = replay(trace)
    assert report.reproduced, report.reason
    assert trace.depth in causal_slice(trace)


def _with_fix() -> list[tuple[Path, str]]:
    out = []
    for f in FILES:
        t = load(f)
        fix = fixing_profile(t)
        if fix is not None and fix != t.profile:
            out.append((f, fix))
    return out


@pytest.mark.parametrize(("path", "fix"), _with_fix(), ids=[f.name for f, _ in _with_fix()])
def test_fix_stops_the_catalog_trace(path: Path, fix: str) -> None:
    trace: Trace = load(path)
    report = replay(trace, profile=fix)
    assert not report.reproduced
    assert report.reason and report.diverged_at is not None
