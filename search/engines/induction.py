"""k-induction: prove an invariant for every depth, not just up to a bound.

The property proved is the conjunction of the invariant, the other invariants the profile
declares to hold (a stronger hypothesis makes the step case easier, and it is sound only
because the conjunction is proved as one), and the well-formedness of the state (enum
fields in range, refcounts within `max_ref`): every conjunct is checked in the base case
as well as assumed in the step case.

- base case: no path of fewer than k steps from the initial state violates the property;
- step case: k consecutive pairwise-distinct states satisfying it, joined by the
  transition relation, are never followed by a state that violates it.

Distinct states make the step case complete for this finite system (a long enough
simple path does not exist), though long before that the step case stops being cheap.
"""

from __future__ import annotations

import time
from typing import Any

import z3

from invariants import INVARIANTS
from model.system import System
from search.engines.bmc import Encoding, Unrolling, _remaining_ms, new_solver, replay
from search.engines.symbolic import concretize, raise_if_interrupted, state_constraints, states_differ
from search.result import PROVED, UNKNOWN, VIOLATED, Result

ENGINE = "k-induction"


class _Unknown(Exception):
    """z3 gave up (or the time ran out): the proof attempt ends as UNKNOWN."""


def _property(enc: Encoding, names: list[str], s: Any, wf: bool) -> Any:
    wf_terms = [c for _, c in state_constraints(s, enc.system.ctx)] if wf else []
    return z3.And(*[enc.invariant(n, s) for n in names], *wf_terms)


def _ask(solver: z3.Solver, lit: Any, deadline: float | None) -> z3.CheckSatResult:
    if deadline is not None and time.monotonic() >= deadline:
        raise _Unknown("timeout")
    solver.set("timeout", _remaining_ms(deadline))
    r = solver.check(lit)
    if r == z3.unknown:
        raise_if_interrupted(solver)
        raise _Unknown(f"z3 answered unknown ({solver.reason_unknown()})")
    return r


class _Base:
    """The base case, deepened one step at a time in one incremental solver."""

    def __init__(self, enc: Encoding, wf: bool) -> None:
        self.enc = enc
        self.wf = wf
        self.path = Unrolling(enc, new_solver(), "b", initial=True)

    def check(self, d: int, names: list[str], deadline: float | None) -> tuple[str, Any] | None:
        """The first conjunct violated at depth `d` with the model, or None."""
        while self.path.depth < d:
            self.path.extend()
        s = self.path.states[d]
        ctx = self.enc.system.ctx
        labelled = [(n, self.enc.invariant(n, s)) for n in names]
        if self.wf:
            labelled += [(f"well-formedness {lab}", c) for lab, c in state_constraints(s, ctx)]
        for label, term in labelled:
            lit = z3.Bool(f"base.{label}.{d}")
            self.path.solver.add(z3.Implies(lit, z3.Not(term)))
            if _ask(self.path.solver, lit, deadline) == z3.sat:
                return label, self.path.solver.model()
            self.path.solver.add(term)  # a fact of depth d from now on
        return None


class _Step:
    """The step case: states t0..tk, the property assumed on all but the last."""

    def __init__(self, enc: Encoding, names: list[str], wf: bool) -> None:
        self.enc = enc
        self.names = names
        self.wf = wf
        self.path = Unrolling(enc, new_solver(), "t", initial=False)

    def check(self, k: int, deadline: float | None) -> Any | None:
        """A counterexample to induction of length k (a model), or None if the step holds."""
        solver = self.path.solver
        while self.path.depth < k:
            solver.add(_property(self.enc, self.names, self.path.states[-1], self.wf))
            self.path.extend()
            new = self.path.states[-1]
            for old in self.path.states[:-1]:
                solver.add(states_differ(old, new))
        lit = z3.Bool(f"step.{k}")
        solver.add(z3.Implies(lit, z3.Not(_property(self.enc, self.names, self.path.states[k], self.wf))))
        if _ask(solver, lit, deadline) == z3.unsat:
            return None
        return solver.model()


def _together(system: System, invariant: str) -> list[str]:
    """The invariant and, if it is declared to hold, the others declared to hold."""
    if system.expected(invariant) != "holds":
        return [invariant]
    return [invariant] + [n for n in INVARIANTS
                          if n != invariant and system.expected(n) == "holds"]


def prove(system: System, invariant: str, k_max: int, timeout: float | None = None) -> Result:
    """PROVED (depth k) only if both the base case to depth k-1 and the step case of
    length k hold; VIOLATED (replayed) if the base case finds a violation of `invariant`;
    otherwise UNKNOWN, with the counterexample to induction or z3's reason in `detail`.

    Two attempts: the invariant alone, then strengthened with well-formedness and the
    companions declared to hold. A stronger property has a stronger hypothesis but also
    more to re-establish, so neither attempt subsumes the other."""
    if invariant not in INVARIANTS:
        raise KeyError(f"unknown invariant {invariant!r}")
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    enc = Encoding.build(system)
    details = []
    for names, wf in (([invariant], False), (_together(system, invariant), True)):
        r = _attempt(enc, invariant, names, wf, k_max, deadline, t0)
        if r.status != UNKNOWN:
            return r
        details.append(r.detail)
    return Result(invariant, ENGINE, UNKNOWN, k_max, [], time.monotonic() - t0,
                  f"alone: {details[0]} | strengthened: {details[1]}")


def _attempt(enc: Encoding, invariant: str, names: list[str], wf: bool, k_max: int,
             deadline: float | None, t0: float) -> Result:
    system = enc.system
    dropped: list[str] = []
    base = _Base(enc, wf)
    step = _Step(enc, names, wf)
    cti = ""
    try:
        for k in range(1, k_max + 1):
            # base case for depth k-1; a declared-holding companion that fails is dropped
            while (bad := base.check(k - 1, names, deadline)) is not None:
                label, model = bad
                if label.startswith("well-formedness"):
                    return Result(invariant, ENGINE, UNKNOWN, k - 1, [], time.monotonic() - t0,
                                  f"not proved: {label} fails at depth {k - 1}, so it cannot "
                                  "be assumed")
                steps = base.path.decode(model, k - 1)
                claimed = [concretize(model, s) for s in base.path.states[:k]]
                replay(system, label, steps, claimed)
                if label == invariant:
                    return Result(invariant, ENGINE, VIOLATED, k - 1, steps,
                                  time.monotonic() - t0, "base case failed")
                names = [n for n in names if n != label]
                dropped.append(label)
                step = _Step(enc, names, wf)
            model = step.check(k, deadline)
            if model is None:
                with_ = f" together with {', '.join(names[1:])}" if len(names) > 1 else ""
                wf_ = " and well-formedness" if wf else ""
                gone = f"; dropped (violated): {', '.join(dropped)}" if dropped else ""
                return Result(invariant, ENGINE, PROVED, k, [], time.monotonic() - t0,
                              f"{k}-inductive{with_}{wf_}{gone}")
            cti = _describe_cti(step, model, k)
    except _Unknown as e:
        return Result(invariant, ENGINE, UNKNOWN, 0, [], time.monotonic() - t0,
                      f"not proved: {e}")
    return Result(invariant, ENGINE, UNKNOWN, k_max, [], time.monotonic() - t0,
                  f"not proved: CTI of length {k_max}: {cti}")


def _describe_cti(step: _Step, model: Any, k: int) -> str:
    """The steps of a counterexample to induction and the conjuncts its last state breaks."""
    steps = step.path.decode(model, k)
    last = step.path.states[k]
    ctx = step.enc.system.ctx
    broken = [n for n in step.names
              if z3.is_false(model.eval(step.enc.invariant(n, last), model_completion=True))]
    if step.wf:
        broken += [lab for lab, c in state_constraints(last, ctx)
                   if z3.is_false(model.eval(c, model_completion=True))]
    return f"{' ; '.join(map(str, steps))} breaks {', '.join(broken[:5])}"
