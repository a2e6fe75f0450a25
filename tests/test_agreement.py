"""The two interpretations of the model agree: for reachable concrete states and every
action instance, the symbolic guard, effect and invariants, evaluated on a fresh symbolic
state and then substituted with the concrete state, simplify to the concrete answers.

This is what makes a z3 counterexample (or a z3 "holds") mean anything about the model.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invariants import INVARIANTS
from model.logic import CONCRETE, SYMBOLIC
from model.state import State, leaves
from model.system import System
from search.engines.symbolic import fresh_state, substituter

CONFIGS = [("v5.18-rc1", False), ("v5.19", False), ("v6.0", True)]


class Symbolic:
    """Every instance's guard and effect, and every invariant, over one fresh state."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.x = fresh_state(system.initial(), "x")
        ctx = system.ctx
        self.guards = [i.guard(self.x, ctx, SYMBOLIC) for i in system.instances]
        self.effects = [i.effect(self.x, ctx, SYMBOLIC) for i in system.instances]
        self.invariants = {n: f(self.x, ctx, SYMBOLIC) for n, f in INVARIANTS.items()}


@cache
def symbolic(profile: str, faults: bool) -> Symbolic:
    return Symbolic(System.build(profile, faults=faults))


def walk(system: System, choices: list[int]) -> State:
    """The state reached by a random walk: each choice picks one enabled instance."""
    s = system.initial()
    for c in choices:
        enabled = system.enabled(s)
        if not enabled:
            break
        s = system.step(s, enabled[c % len(enabled)])
    return s


def _same(sym: Any, conc: Any) -> bool:
    # the same Python type too: a bool where an int belongs is a bug in one of the worlds
    return sym == conc and isinstance(sym, bool) == isinstance(conc, bool)


def check_agreement(sym: Symbolic, s: State) -> None:
    system, ctx = sym.system, sym.system.ctx
    substitute = substituter(sym.x, s)
    for inv_name, term in sym.invariants.items():
        want = INVARIANTS[inv_name](s, ctx, CONCRETE)
        got = substitute(term)
        assert _same(got, bool(want)), f"invariant {inv_name}: symbolic {got}, concrete {want}"
    for inst, g, e in zip(system.instances, sym.guards, sym.effects, strict=True):
        want_g = bool(inst.guard(s, ctx, CONCRETE))
        got_g = substitute(g)
        assert _same(got_g, want_g), f"guard of {inst}: symbolic {got_g}, concrete {want_g}"
        if not want_g:
            continue  # a disabled instance's effect is never taken by any engine
        want_e = system.step(s, inst)
        got_e = substitute(e)
        for (path, a), (_, b) in zip(leaves(got_e), leaves(want_e), strict=True):
            assert _same(a, b), f"effect of {inst} on {path}: symbolic {a}, concrete {b}"


@pytest.mark.parametrize(("profile", "faults"), CONFIGS)
@settings(derandomize=True, database=None, deadline=None, max_examples=4)
@given(choices=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_symbolic_agrees_with_concrete(profile: str, faults: bool, choices: list[int]) -> None:
    sym = symbolic(profile, faults)
    check_agreement(sym, walk(sym.system, choices))


def test_initial_state_agrees() -> None:
    sym = symbolic("v5.18-rc1", False)
    check_agreement(sym, sym.system.initial())
