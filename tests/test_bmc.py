"""BMC finds the declared history at its shortest depth, never reports a counterexample
the concrete model does not confirm, and never turns z3's "unknown" into "holds"."""

from __future__ import annotations

from typing import Any

import pytest
import z3

from model.system import System
from search.engines import bmc
from search.result import HOLDS, UNKNOWN, VIOLATED, InternalError


def test_v518_rc1_shortest_violations() -> None:
    system = System.build("v5.18-rc1")
    res = bmc.check(system, ["no_exec_uninit", "no_tail_as_base"], depth=3)
    assert res["no_exec_uninit"].status == VIOLATED
    assert res["no_exec_uninit"].depth == 1
    assert len(res["no_exec_uninit"].steps) == 1
    assert res["no_tail_as_base"].status == VIOLATED
    assert res["no_tail_as_base"].depth == 3
    names = [i.name for i in res["no_tail_as_base"].steps]
    assert names[0] == "vmalloc" and names[1] == "vmalloc_to_page"


def test_v51_wx_at_depth_one() -> None:
    res = bmc.check(System.build("v5.1"), ["wx"], depth=2)
    assert res["wx"].status == VIOLATED
    assert res["wx"].depth == 1
    assert res["wx"].seconds > 0


def test_v519_nothing_to_depth_3() -> None:
    # 5.19 without its BPF trampolines, kprobes and ftrace trampolines (which break wx and
    # no_exec_uninit in every x86 version): the 2022 story's own paths are clean
    from model.profiles import QUIET_USERS

    system = System.build("v5.19", overrides=QUIET_USERS)
    names = ["no_tail_as_base", "no_exec_uninit", "no_stale_exec", "wx"]
    seen: list[tuple[int, str]] = []
    res = bmc.check(system, names, depth=3, progress=lambda d, n: seen.append((d, n)))
    for name in names:
        assert res[name].status == HOLDS, res[name]
        assert res[name].depth == 3
    assert seen[0] == (0, names[0]) and seen[-1] == (3, names[-1])


def test_corrupted_decode_is_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    system = System.build("v5.1")
    original = bmc.Unrolling.decode

    def corrupt(self: bmc.Unrolling, model: z3.ModelRef, depth: int) -> list[Any]:
        steps = original(self, model, depth)
        # the same length, but an instance z3 did not choose: vmalloc never breaks wx
        vmalloc = next(i for i in system.instances if i.name == "vmalloc")
        return [vmalloc for _ in steps]

    monkeypatch.setattr(bmc.Unrolling, "decode", corrupt)
    with pytest.raises(InternalError, match="REPLAY FAILED"):
        bmc.check(system, ["wx"], depth=1)


def test_replay_rejects_a_non_violation() -> None:
    system = System.build("v5.19")
    step = next(i for i in system.instances if i.name == "vmalloc")
    with pytest.raises(InternalError, match="holds on the concrete model"):
        bmc.replay(system, "wx", [step])


class _Unknown:
    """A solver that gives up on every question, as z3 does on a timeout."""

    reason = "canceled"

    def __init__(self, inner: z3.Solver) -> None:
        self.inner = inner

    def add(self, *a: Any) -> None:
        self.inner.add(*a)

    def set(self, *a: Any, **k: Any) -> None:
        self.inner.set(*a, **k)

    def check(self, *a: Any) -> z3.CheckSatResult:
        return z3.unknown

    def reason_unknown(self) -> str:
        return self.reason


def test_unknown_is_never_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bmc.new_solver
    monkeypatch.setattr(bmc, "new_solver", lambda: _Unknown(real()))
    res = bmc.check(System.build("v5.19"), ["wx", "no_exec_uninit"], depth=2)
    for r in res.values():
        assert r.status == UNKNOWN
        assert "unknown" in r.detail and "canceled" in r.detail


def test_ctrl_c_inside_z3_interrupts_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """z3 answers unknown when Ctrl-C arrives during a query: that must stop the run
    (the CLI then prints what finished), not become an unknown result."""

    class _Interrupted(_Unknown):
        reason = "interrupted from keyboard"

    real = bmc.new_solver
    monkeypatch.setattr(bmc, "new_solver", lambda: _Interrupted(real()))
    with pytest.raises(KeyboardInterrupt):
        bmc.check(System.build("v5.19"), ["wx"], depth=2)


def test_exhausted_timeout_is_unknown() -> None:
    res = bmc.check(System.build("v5.19"), ["wx"], depth=5, timeout=0.0)
    assert res["wx"].status == UNKNOWN
    assert "timeout" in res["wx"].detail


def test_unknown_invariant_name() -> None:
    with pytest.raises(KeyError):
        bmc.check(System.build("v5.19"), ["no_such_thing"], depth=1)
