"""A false guard is explained in kernel terms: every conjunct of every built-in guard has
its sentence, and the explanation gives the sentence first and the source text second."""

from __future__ import annotations

from model.actions import ACTIONS
from model.actions.reasons import REASONS
from model.system import System
from search.traces.itf import find_instances
from search.traces.replay import explain_guard, guard_conjuncts


def _count(fn) -> int:
    parts = guard_conjuncts(fn)
    assert parts is not None, fn
    texts, is_and = parts
    return len(texts) if is_and else 1


def test_every_builtin_conjunct_has_a_sentence() -> None:
    assert set(REASONS) == set(ACTIONS), set(REASONS) ^ set(ACTIONS)
    for name, act in ACTIONS.items():
        r = REASONS[name]
        assert len(r["guard"]) == _count(act.guard), name
        assert len(r.get("pre", ())) == (_count(act.pre) if act.pre else 0), name


def test_every_call_check_has_a_sentence() -> None:
    from model.actions.base import REGISTRY

    calls = [a for a in REGISTRY if not a.builtin]
    assert calls
    for a in calls:
        for sentence, g in a.checks:
            assert sentence and callable(g), a.name


def test_explanation_is_in_kernel_terms_first() -> None:
    system = System.build("v5.19")
    s = system.initial()
    (load,) = find_instances(system, ["move_module(area=0, npages=1)"])
    s = system.step(s, load)
    (x,) = find_instances(system, ["set_memory_x(area=0, npages=1, fail=false)"])
    assert not x.guard(s, system.ctx, __import__("model.logic").logic.CONCRETE)
    why = explain_guard(x, s, system)
    assert why.startswith("vm area 0 is no module or JIT image"), why
    assert "set_memory_ro must come first" in why and "`_lock_step(" in why


def test_call_explanation_names_the_kernel_rule() -> None:
    system = System.build("v5.19", scenario=True)
    s = system.initial()
    (f,) = [i for i in system.instances if str(i) == "vfree(addr=0, fail=false)"]
    why = explain_guard(f, s, system)
    assert why.startswith("vm area 0 is not allocated") and "nonexistent vm area" in why, why
