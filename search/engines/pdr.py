"""IC3/PDR: prove an invariant for every depth within the bounds, with the inductive
invariant as the evidence.

Why our own IC3 and not z3's Spacer: Spacer (z3's CHC engine, `SolverFor("HORN")`) was
tried first on the same encoding (Init -> Inv; Inv & wf & T -> Inv'; Inv & !P -> false),
as one Horn rule with the selector and as one rule per action instance, over the
bit-vectors and translated to bounded integers. At the default bounds it timed out after
150 s on v5.19's direct_map_integrity and no_tail_as_base in every form (measured here,
2026-11): it stays at frame 2-3 and blocks about one proof obligation a second, its
lemmas too specific for a state that is a record of small enums. This engine is IC3
(Bradley 2011; Een, Mishchenko and Brayton 2011) over exactly that structure: a cube is
a conjunction of `leaf == value` literals over the flattened state (`symbolic.flat`), a
predecessor is lifted to the literals that force its step, a lemma (a negated cube) is
shrunk by unsat cores and by dropping literals, and every query is a plain z3 query
over the step relation written as `Encoding.build` writes it.

Two things make it fast enough: the cone of influence (`Cone`: IC3 sees only the leaves
the invariant depends on, 46 to 68 of v5.19's 97; first measured without it, one
invariant took 271 s, and all five together did not finish in 400 s), and proving the
invariant together with the well-formedness of those leaves (enum fields in range, counts
within `max_ref`), which keeps junk values out of the frames. If some reachable state is
not well formed (a profile whose refcount underflows), the invariant alone is tried next.

The answer is PROVED only with an inductive invariant (the property and the lemmas of
the frame that became equal to the next one) that `search.engines.certificate` checked
with a separate plain solver against the whole step relation. A counterexample IC3
finds is replayed on the concrete model: a real violation is reported as "not proved"
with its steps (the bounded result stands; it is deeper than the bounded search went).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from invariants import INVARIANTS
from model.actions import Instance
from model.logic import CONCRETE, SYMBOLIC, WIDTH
from model.system import System
from search.engines import certificate
from search.engines.bmc import Encoding, _remaining_ms
from search.engines.symbolic import (
    as_z3,
    distinct_subterms,
    flat,
    raise_if_interrupted,
    state_constraints,
)
from search.result import PROVED, UNKNOWN, Result

ENGINE = "pdr"

Cube = tuple[tuple[int, Any], ...]  # sorted (leaf index, value) pairs: a conjunction



class GiveUp(Exception):
    """z3 answered unknown, or the time ran out: no proof, no refutation."""


@dataclass
class Outcome:
    """What one IC3 run found.

    `status` is "proved" (with `invariant`, a z3 Bool over `Encoding.cur`), "refuted"
    (with `steps`, a concrete path from the initial state to a state violating the
    property) or "unknown" (with the reason in `detail`)."""

    status: str
    invariant: Any = None
    steps: list[Instance] = field(default_factory=list)
    detail: str = ""
    lemmas: int = 0
    frames: int = 0
    queries: int = 0
    facts_used: bool = False  # the invariant includes facts proved before
    own: Any = None  # the property and this run's lemmas, without the facts


@dataclass(order=True)
class _Obligation:
    level: int
    order: int
    cube: Cube = field(compare=False)
    # the obligation this one is a predecessor of, and the step that leads there
    parent: _Obligation | None = field(compare=False, default=None)
    step: Instance | None = field(compare=False, default=None)


def _value(v: Any) -> Any:
    """A model value (or a concrete leaf) as the Python value a cube stores."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v % (1 << WIDTH)  # an underflow is -1 concretely, 2**WIDTH - 1 in z3
    if z3.is_true(v):
        return True
    if z3.is_false(v):
        return False
    return v.as_long()


@dataclass
class Cone:
    """The cone of influence of a property: the leaves it reads, and (to a fixpoint) every
    leaf read by the guard of an instance that writes one of those, or by what it
    writes there. Instances that write none of them only stutter as far as the property
    is concerned, so the states the cone reaches are exactly the projections of the
    reachable states: IC3 searches the cone (46 to 68 of v5.19's 97 leaves), and an
    invariant over the cone is one over the whole state, which the certificate check
    verifies against the whole step relation.

    `relation` is over `xs`, `ys` and `sel`, built as `Encoding.build` builds its own:
    each kept leaf's next value an `If` chain over the instances that write it."""

    system: System
    keep: list[int]  # leaf indices, in `flat` order
    xs: list[Any]
    ys: list[Any]
    sel: Any
    init: tuple[Any, ...]
    guards: dict[int, Any]  # instance index -> guard (only the instances that write the cone)
    outs: dict[int, list[Any]]  # instance index -> next values of the kept leaves
    relation: Any


def _free(term: Any, index: dict[int, int]) -> set[int]:
    """The leaf indices (by `index`: z3 id -> leaf) that occur in `term`."""
    return {index[t.get_id()] for t in distinct_subterms(term) if t.get_id() in index}


@dataclass
class Steps:
    """Every instance's guard and next-state leaves over `Encoding.cur`, computed once
    per configuration (the symbolic effects are the expensive part of building)."""

    enc: Encoding
    guards: list[Any]
    outs: list[list[Any]]
    reads: list[set[int]]  # leaves the guard reads
    writes: list[dict[int, set[int]]]  # leaf written -> leaves its new value reads

    @classmethod
    def build(cls, enc: Encoding) -> Steps:
        system = enc.system
        xs = [as_z3(v) for v in flat(enc.cur)]
        index = {x.get_id(): i for i, x in enumerate(xs)}
        guards, outs, reads, writes = [], [], [], []
        for inst in system.instances:
            g = as_z3(inst.guard(enc.cur, system.ctx, SYMBOLIC))
            out = [as_z3(v) for v in flat(inst.effect(enc.cur, system.ctx, SYMBOLIC))]
            guards.append(g)
            outs.append(out)
            reads.append(_free(g, index))
            writes.append({j: _free(o, index) for j, o in enumerate(out) if not o.eq(xs[j])})
        return cls(enc, guards, outs, reads, writes)

    def cone(self, prop: Any) -> Cone:
        enc = self.enc
        xs = [as_z3(v) for v in flat(enc.cur)]
        ys = [as_z3(v) for v in flat(enc.nxt)]
        index = {x.get_id(): i for i, x in enumerate(xs)}
        keep = _free(prop, index)
        while True:
            grown = set(keep)
            for reads, writes in zip(self.reads, self.writes, strict=True):
                hit = [j for j in writes if j in keep]
                if hit:
                    grown |= reads
                    for j in hit:
                        grown |= writes[j]
            if grown == keep:
                break
            keep = grown
        kept = sorted(keep)
        writers = [i for i, w in enumerate(self.writes) if any(j in keep for j in w)
                   and not z3.is_false(self.guards[i])]
        sel = enc.sel
        conj = [z3.Or(*[z3.And(sel == i, self.guards[i]) for i in writers])
                if writers else z3.BoolVal(False)]
        for j in kept:
            value: Any = xs[j]
            for i in reversed(writers):
                if j in self.writes[i]:
                    value = z3.If(sel == i, self.outs[i][j], value)
            conj.append(ys[j] == value)
        init = tuple(_value(v) for v in flat(enc.system.initial()))
        return Cone(enc.system, kept, [xs[j] for j in kept], [ys[j] for j in kept], sel,
                    tuple(init[j] for j in kept), {i: self.guards[i] for i in writers},
                    {i: [self.outs[i][j] for j in kept] for i in writers}, z3.And(*conj))


class IC3:
    """One IC3 run for one property over one encoding.

    Frames use the delta encoding: a lemma stored at level L holds in frames 1..L, and
    frame i is the property and every lemma of level >= i. One incremental solver holds
    the step relation once, the property on the current state (every frame from 1 on
    lies inside it, and the initial state satisfies it), the initial state under an
    activation literal and every lemma under the literal of its level."""

    def __init__(self, cone: Cone, prop: Any, deadline: float | None,
                 facts: Sequence[Any] = (), mic_budget: int = 3,
                 tick: Callable[[str], None] | None = None) -> None:
        self.cone = cone
        # told where the search is (frame, lemmas, queries) every TICK_EVERY queries: a proof
        # can run for minutes, and a long run shows it is alive
        self.tick = tick
        self.frame = 0
        self.system = cone.system
        self.xs = cone.xs
        self.ys = cone.ys
        self.sel = cone.sel
        self.prop = prop
        self.deadline = deadline
        self.mic_budget = mic_budget
        self.init = cone.init
        self.queries = 0
        self._order = itertools.count()
        self._tmp = itertools.count()
        self.levels: list[z3.BoolRef] = []  # activation literal of each level, 0 = Init
        self.lemmas: dict[Cube, int] = {}  # cube -> level
        self.solver = self._solver()
        self.solver.add(cone.relation)
        self.solver.add(prop)
        # inductive invariants already proved for this configuration (over the whole
        # state): true of every reachable state, so true in every frame; they become
        # part of this invariant, whose certificate check then covers them too
        self.facts = list(facts)
        self.solver.add(*self.facts)
        self._level(0)
        self.solver.add(z3.Implies(self.levels[0], z3.And(*[
            self._lit(self.xs, i, v) for i, v in enumerate(self.init)])))
        self._bad_prime = z3.Not(z3.substitute(prop, *zip(self.xs, self.ys, strict=True)))

    # ---- z3 plumbing ----------------------------------------------------------------

    @staticmethod
    def _solver() -> z3.Solver:
        # the general incremental solver: measured twice the lemmas per second of
        # SolverFor("QF_BV") here, whose model conversion took 23 ms a query
        s = z3.Solver()
        s.set("random_seed", 0)
        return s

    def _level(self, i: int) -> None:
        while len(self.levels) <= i:
            self.levels.append(z3.Bool(f"pdr.level.{len(self.levels)}"))

    def _lit(self, vs: Sequence[Any], i: int, v: Any) -> Any:
        x = vs[i]
        if isinstance(v, bool):
            return x if v else z3.Not(x)
        return x == z3.BitVecVal(v, WIDTH)

    def _cube(self, vs: Sequence[Any], c: Cube) -> list[Any]:
        return [self._lit(vs, i, v) for i, v in c]

    def _check(self, solver: z3.Solver, *assumptions: Any) -> z3.CheckSatResult:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise GiveUp("timeout")
        solver.set("timeout", _remaining_ms(self.deadline))
        self.queries += 1
        if self.tick is not None and self.queries % TICK_EVERY == 0:
            self.tick(f"IC3 frame {self.frame}, {len(self.lemmas)} lemmas, "
                      f"{self.queries} queries")
        r = solver.check(*assumptions)
        if r == z3.unknown:
            raise_if_interrupted(solver)
            why = solver.reason_unknown()
            if why in ("canceled", "timeout") and self.deadline is not None \
                    and time.monotonic() >= self.deadline - 0.5:
                raise GiveUp("timeout")
            raise GiveUp(f"z3 answered unknown ({why})")
        return r

    def _frame(self, i: int) -> list[Any]:
        """The activation literals of frame i (0: the initial state)."""
        if i == 0:
            return [self.levels[0]]
        return self.levels[i:]

    def _state(self, model: z3.ModelRef) -> Cube:
        return tuple((i, _value(model.eval(x, model_completion=True)))
                     for i, x in enumerate(self.xs))

    def _instance(self, model: z3.ModelRef) -> Instance:
        idx = model.eval(self.sel, model_completion=True).as_long()
        return self.system.instances[idx]

    def intersects_init(self, c: Cube) -> bool:
        return all(self.init[i] == v for i, v in c)

    # ---- the IC3 steps --------------------------------------------------------------

    def relative(self, j: int, c: Cube, assume_not_c: bool = True
                 ) -> tuple[bool, Cube | z3.ModelRef]:
        """Is `c` reachable in one step from frame j (outside c)? (False, the part of c
        the unsat core kept) or (True, the model)."""
        extra = []
        if assume_not_c and j > 0:
            t = z3.Bool(f"pdr.tmp.{next(self._tmp)}")
            self.solver.add(z3.Implies(t, z3.Not(z3.And(*self._cube(self.xs, c)))))
            extra.append(t)
        primed = self._cube(self.ys, c)
        by_id = {p.get_id(): lit for p, lit in zip(primed, c, strict=True)}
        r = self._check(self.solver, *self._frame(j), *extra, *primed)
        if r == z3.sat:
            answer: tuple[bool, Any] = (True, self.solver.model())
        else:
            core = {e.get_id() for e in self.solver.unsat_core()}
            answer = (False, tuple(lit for pid, lit in by_id.items() if pid in core))
        for t in extra:
            self.solver.add(z3.Not(t))  # retired (after reading the model or the core)
        return answer

    def lift(self, model: z3.ModelRef, target: Any | None, c: Cube | None) -> Cube:
        """The predecessor state of `model`, shrunk to the literals that still force its
        step (the model's instance) to be enabled and to land in `c` (or in `target`, a
        formula over the next state)."""
        state = self._state(model)
        idx = model.eval(self.sel, model_completion=True).as_long()
        guard, out = self.cone.guards[idx], self.cone.outs[idx]
        if c is not None:
            after = z3.And(*[out[i] == as_z3(z3.BoolVal(v) if isinstance(v, bool)
                                             else z3.BitVecVal(v, WIDTH)) for i, v in c])
        else:
            after = z3.substitute(target, *zip(self.ys, out, strict=True))
        s = self._solver()
        s.add(z3.Not(z3.And(guard, after)))
        lits = self._cube(self.xs, state)
        by_id = {e.get_id(): lit for e, lit in zip(lits, state, strict=True)}
        if self._check(s, *lits) == z3.sat:
            return state  # cannot happen for a deterministic step; keep the whole state
        core = {e.get_id() for e in s.unsat_core()}
        return tuple(lit for pid, lit in by_id.items() if pid in core)

    def _fix_init(self, g: Cube, c: Cube) -> Cube:
        """`g` widened back by one literal of `c` if it now covers the initial state."""
        if not self.intersects_init(g):
            return g
        for i, v in c:
            if self.init[i] != v:
                return tuple(sorted({*g, (i, v)}))
        raise AssertionError("a cube to block contains the initial state")

    def generalize(self, j: int, c: Cube, core: Cube) -> Cube:
        """A smaller cube, still unreachable in one step from frame j: the unsat core,
        then literals dropped one at a time while that stays true (a bounded MIC)."""
        g = self._fix_init(core or c, c)
        tries = 0
        for lit in list(g):
            if len(g) <= 1 or tries >= self.mic_budget * len(c):
                break
            if lit not in g:
                continue
            cand = tuple(x for x in g if x != lit)
            if self.intersects_init(cand):
                continue
            tries += 1
            reached, smaller = self.relative(j, cand)
            if not reached:
                g = self._fix_init(smaller or cand, cand)  # type: ignore[arg-type]
        return g

    def add_lemma(self, c: Cube, level: int) -> None:
        self._level(level)
        self.lemmas[c] = level
        self.solver.add(z3.Implies(self.levels[level], z3.Not(z3.And(*self._cube(self.xs, c)))))

    def block(self, root: _Obligation, k: int) -> _Obligation | None:
        """Block every obligation down to the initial state; the obligation that reached
        it (a counterexample) or None when all are blocked."""
        queue = [root]
        while queue:
            ob = heapq.heappop(queue)
            if ob.level == 0 or self.intersects_init(ob.cube):
                return ob  # the initial state leads, step by step, to a bad state
            if self._blocked(ob.cube, ob.level):
                continue
            reached, got = self.relative(ob.level - 1, ob.cube)
            if reached:
                model = got
                pre = self.lift(model, None, ob.cube)  # type: ignore[arg-type]
                heapq.heappush(queue, _Obligation(ob.level - 1, next(self._order), pre, ob,
                                                  self._instance(model)))  # type: ignore[arg-type]
                heapq.heappush(queue, ob)
                continue
            g = self.generalize(ob.level - 1, ob.cube, got)  # type: ignore[arg-type]
            level = ob.level
            while level < k and not self.relative(level, g)[0]:
                level += 1
            self.add_lemma(g, level)
            if level < k:
                heapq.heappush(queue, _Obligation(level + 1, next(self._order), ob.cube,
                                                  ob.parent, ob.step))
        return None

    def _blocked(self, c: Cube, level: int) -> bool:
        """Syntactically: a lemma of level >= `level` already excludes all of `c`."""
        cs = set(c)
        return any(lv >= level and set(lc) <= cs for lc, lv in self.lemmas.items())

    def propagate(self, k: int) -> int | None:
        """Push lemmas forward; the first level left without a lemma of its own (frame i
        equals frame i+1: an inductive invariant), or None."""
        for i in range(1, k + 1):
            for c, lv in sorted(self.lemmas.items(), key=lambda kv: kv[0]):
                if lv == i and not self.relative(i, c, assume_not_c=False)[0]:
                    self.add_lemma(c, i + 1)
            if all(lv != i for lv in self.lemmas.values()):
                return i
        return None

    def run(self, max_frames: int = 10_000) -> Outcome:
        self._level(1)
        for k in range(1, max_frames + 1):
            self.frame = k
            self._level(k + 1)
            while True:
                t = z3.Bool(f"pdr.tmp.{next(self._tmp)}")
                self.solver.add(z3.Implies(t, self._bad_prime))
                r = self._check(self.solver, *self._frame(k), t)
                model = self.solver.model() if r == z3.sat else None
                self.solver.add(z3.Not(t))
                if model is None:
                    break
                pre = self.lift(model, self._bad_prime, None)
                root = _Obligation(k, next(self._order), pre, None, self._instance(model))
                cex = self.block(root, k)
                if cex is not None:
                    return Outcome("refuted", steps=self._path(cex), frames=k,
                                   queries=self.queries, lemmas=len(self.lemmas))
            fixed = self.propagate(k)
            if fixed is not None:
                kept = [c for c, lv in self.lemmas.items() if lv > fixed]
                own = z3.And(self.prop, *[z3.Not(z3.And(*self._cube(self.xs, c)))
                                          for c in sorted(kept)])
                return Outcome("proved", invariant=z3.And(own, *self.facts), frames=k,
                               queries=self.queries, lemmas=len(kept),
                               facts_used=bool(self.facts), own=own)
        return Outcome("unknown", detail=f"no fixpoint within {max_frames} frames",
                       frames=max_frames, queries=self.queries, lemmas=len(self.lemmas))

    def _path(self, ob: _Obligation) -> list[Instance]:
        steps: list[Instance] = []
        while ob.parent is not None or ob.step is not None:
            assert ob.step is not None
            steps.append(ob.step)
            if ob.parent is None:
                break
            ob = ob.parent
        return steps


def _first_violation(system: System, invariant: str, steps: Sequence[Instance]
                     ) -> list[Instance] | None:
    """The prefix of `steps` up to the first state that violates `invariant` on the
    concrete model, or None (the path violates only well-formedness, or a guard fails:
    then the symbolic and the concrete model disagree, which replay elsewhere reports)."""
    inv = INVARIANTS[invariant]
    s = system.initial()
    if not inv(s, system.ctx, CONCRETE):
        return []
    for n, inst in enumerate(steps, 1):
        if not inst.guard(s, system.ctx, CONCRETE):
            return None
        s = system.step(s, inst)
        if not inv(s, system.ctx, CONCRETE):
            return list(steps[:n])
    return None




# ---- proofs with certificates -------------------------------------------------------

DEFAULT_TIMEOUT = 900.0  # seconds per proof when the caller sets none: never endless


@dataclass
class Proof:
    """A proof attempt as the command line reports it: a Result, and when PROVED the
    certificate (already checked by `certificate.check_formula`, not yet saved)."""

    result: Result
    certificate: certificate.Certificate | None = None
    check_seconds: float = 0.0


def _key(system: System) -> tuple[Any, ...]:
    # z3's context too: a cached term of a context `symbolic.fresh_z3` dropped cannot meet
    # a new one (the cached terms keep that context, and so its id, alive)
    return (id(z3.main_ctx()), system.profile.name, system.bounds, system.faults, system.scenario,
            tuple(sorted((k, repr(v)) for k, v in system.overrides.items())))


# the last configuration's encoding and instance terms: `--prove` asks for one invariant
# at a time, profile by profile, and building them takes seconds
_CACHE: dict[tuple[Any, ...], Steps] = {}


def steps_of(system: System) -> Steps:
    key = _key(system)
    if key not in _CACHE:
        _CACHE.clear()  # and what was proved of the last configuration
        _PROVED.clear()
        _FAILED.clear()
        _CACHE[key] = Steps.build(Encoding.build(system))
    return _CACHE[key]


# configuration -> invariant -> (its inductive invariant, IC3's outcome, seconds, how);
# and the invariants tried and not proved (not tried again as companions)
_PROVED: dict[tuple[Any, ...], dict[str, tuple[Outcome, float, str]]] = {}
_FAILED: dict[tuple[Any, ...], set[str]] = {}


def prove(system: System, invariant: str, timeout: float | None = None,
          tick: Callable[[str], None] | None = None) -> Proof:
    """PROVED only with a certificate that `certificate.check_formula` accepted;
    otherwise UNKNOWN with "not proved: ..." saying why (a counterexample IC3 found and
    the concrete model confirmed, a timeout, z3's unknown, a certificate that failed).

    Invariants proved before for this configuration are facts IC3 starts from (and part
    of the certificate). So an invariant declared to hold first has the other declared
    holding invariants with a smaller cone proved, smallest first, each with at most half
    the time left: measured on v5.19, no_stale_exec alone timed out after 300 s, and
    took 97 s given no_tail_as_base, direct_map_integrity and refcount_sanity."""
    if invariant not in INVARIANTS:
        raise KeyError(f"unknown invariant {invariant!r}")
    t0 = time.monotonic()
    deadline = t0 + (DEFAULT_TIMEOUT if timeout is None else timeout)
    z3.set_param("smt.random_seed", 0)
    z3.set_param("sat.random_seed", 0)
    steps = steps_of(system)
    key = _key(system)
    proved = _PROVED.setdefault(key, {})
    failed = _FAILED.setdefault(key, set())
    if invariant not in proved and system.expected(invariant) == "holds":
        size = len(steps.cone(as_z3(steps.enc.invariant(invariant, steps.enc.cur))).keep)
        for other in _companions(system, steps, invariant, size):
            if other in proved or other in failed:
                continue
            now = time.monotonic()
            got, _ = _search(system, steps, other, now + (deadline - now) / 2,
                             _about(tick, f"{other} first, a fact for {invariant}"))
            if got is None:
                failed.add(other)
    if invariant in proved:
        out, seconds, how = proved[invariant]
        return _certified(system, invariant, steps.enc, out, seconds, deadline, t0, how)
    got, why = _search(system, steps, invariant, deadline, _about(tick, invariant))
    if got is None:
        failed.add(invariant)
        return Proof(Result(invariant, ENGINE, UNKNOWN, 0, [], time.monotonic() - t0,
                            "not proved: " + why))
    out, seconds, how = got
    return _certified(system, invariant, steps.enc, out, seconds, deadline, t0, how)


def _companions(system: System, steps: Steps, invariant: str, size: int) -> list[str]:
    """The other invariants declared to hold whose cone is smaller, smallest first."""
    enc = steps.enc
    sized = []
    for n in INVARIANTS:
        if n != invariant and system.expected(n) == "holds":
            k = len(steps.cone(as_z3(enc.invariant(n, enc.cur))).keep)
            if k < size:
                sized.append((k, n))
    return [n for _, n in sorted(sized)]


TICK_EVERY = 200  # queries between progress ticks (a few seconds of a long proof)


def _about(tick: Callable[[str], None] | None, what: str) -> Callable[[str], None] | None:
    return None if tick is None else (lambda text: tick(f"proving {what}: {text}"))


def _search(system: System, steps: Steps, invariant: str, deadline: float,
            tick: Callable[[str], None] | None = None
            ) -> tuple[tuple[Outcome, float, str] | None, str]:
    """IC3 on `invariant` with the facts proved so far: (outcome, seconds, how), cached
    in `_PROVED`, or None and why not. First with the well-formedness of the cone's
    leaves, then (if some reachable state is not well formed) without."""
    enc = steps.enc
    proved = _PROVED.setdefault(_key(system), {})
    # each proved invariant's own part once: its facts are among them already
    facts = [out.own if out.own is not None else out.invariant
             for out, _, _ in proved.values()]
    why: list[str] = []
    inv = as_z3(enc.invariant(invariant, enc.cur))
    cone = steps.cone(inv)
    in_cone = {x.get_id(): n for n, x in enumerate(cone.xs)}
    # well-formedness of the cone's leaves only (each constraint reads one leaf)
    wf_cone = [c for _, c in state_constraints(enc.cur, system.ctx) if _free(c, in_cone)]
    for wf in (True, False):
        what = invariant + (" with well-formedness" if wf else "")
        prop = z3.And(inv, *wf_cone) if wf else inv
        t1 = time.monotonic()
        try:
            out = _already_inductive(system, invariant, prop, enc, deadline)
            if out is None:
                out = IC3(cone, prop, deadline, facts, tick=tick).run()
        except GiveUp as e:
            why.append(f"{what}: {e}")
            break
        if out.status == "proved":
            using = [n for n in proved if n != invariant]
            how = (f"{out.lemmas} lemmas over {len(cone.keep)} of {len(flat(enc.cur))} "
                   f"leaves, {out.frames} frames" + (", with well-formedness" if wf else "")
                   + (f", given {', '.join(using)}" if using and out.facts_used else ""))
            proved[invariant] = (out, time.monotonic() - t1, how)
            return proved[invariant], ""
        if out.status == "refuted":
            real = _first_violation(system, invariant, out.steps)
            if real is not None:
                why.append(f"{invariant} is violated after {len(real)} steps: "
                           + " ; ".join(map(str, real)))
                break
            why.append(f"{what}: a reachable state is not well formed")
            continue
        why.append(f"{what}: {out.detail}")
        break
    return None, "; ".join(why)


def _already_inductive(system: System, invariant: str, prop: Any, enc: Encoding,
                       deadline: float | None) -> Outcome | None:
    """The property itself as the invariant, when it is 1-inductive (three queries,
    before IC3 spends minutes finding lemmas it does not need)."""
    text = certificate.to_smtlib(prop, enc)
    v = certificate.check_formula(system, invariant, text, _left(deadline), enc)
    if v.valid is None:
        raise GiveUp(v.reason)
    return Outcome("proved", invariant=prop) if v.valid else None


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _certified(system: System, invariant: str, enc: Encoding, out: Outcome, seconds: float,
               deadline: float, t0: float, how: str) -> Proof:
    """The certificate of `out.invariant` for `invariant`, checked from its SMT-LIB text
    (what is saved is exactly what was checked)."""
    cert = certificate.make(system, invariant, out.invariant, enc, ENGINE, seconds, out.lemmas)
    left = _left(deadline)
    v = certificate.check_formula(system, invariant, cert.formula,
                                  None if left is None else max(left, 60.0), enc)
    elapsed = time.monotonic() - t0
    if v.valid:
        return Proof(Result(invariant, ENGINE, PROVED, out.frames, [], elapsed,
                            f"inductive invariant: {how}"), cert, v.seconds)
    # an invariant IC3 found that the plain check rejects is a bug of this engine; it is
    # reported, never printed as proved
    state = "rejected by its check (an engine bug)" if v.valid is False else "unchecked"
    return Proof(Result(invariant, ENGINE, UNKNOWN, 0, [], elapsed,
                        f"not proved: the certificate is {state}: {v.reason}"))
