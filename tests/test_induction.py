"""k-induction proves only what holds: never a violated invariant, and a trivially
inductive property at k=1."""

from __future__ import annotations

from typing import Any

import pytest

import invariants
from model.bounds import Bounds
from model.profiles import QUIET_USERS
from model.system import System
from search.engines import induction
from search.result import PROVED, UNKNOWN, VIOLATED

TINY = Bounds.parse("areas=1,hpage=2,chunks=1,progs=1,refs=0,max_ref=2")


def test_violated_invariant_is_never_proved() -> None:
    r = induction.prove(System.build("v5.18-rc1"), "no_exec_uninit", k_max=2)
    assert r.status == VIOLATED
    assert r.depth == 1 and len(r.steps) == 1


def test_trivial_property_is_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    def nonnegative(s: Any, c: Any, L: Any) -> Any:
        # unsigned: true of every state, and so 1-inductive
        return L.le(0, s.dmap.splits)

    monkeypatch.setitem(invariants.INVARIANTS, "nonnegative", nonnegative)
    monkeypatch.setattr(induction, "INVARIANTS", invariants.INVARIANTS)
    r = induction.prove(System.build("v5.19", bounds=TINY), "nonnegative", k_max=2)
    assert r.status == PROVED and r.depth == 1


def test_not_inductive_reports_a_cti() -> None:
    r = induction.prove(System.build("v5.19", bounds=TINY, overrides=QUIET_USERS), "wx", k_max=2,
                        timeout=120)
    # wx holds on v5.19's 2022 paths but is not 2-inductive at these bounds: never PROVED here
    assert r.status == UNKNOWN
    assert "not proved" in r.detail and "CTI of length 2" in r.detail


def test_unknown_invariant_name() -> None:
    with pytest.raises(KeyError):
        induction.prove(System.build("v5.19", bounds=TINY), "no_such_thing", k_max=1)
