"""Bounded model checking: unroll the transition system in z3, deepen one step at a time.

The encoding is the one architecture.md measured: fixed-width bit-vectors, one selector
per step choosing an action instance, each leaf's next value an `If` chain over only the
instances that write that leaf, and one incremental solver per configuration. The step
relation is built once over a pair of template states and re-instantiated per step with
`z3.substitute`, which is several times cheaper than running 460 symbolic effects again.

Depths are checked in increasing order and every invariant at each depth before the
next one, so the first counterexample found for an invariant is a shortest one. Once an
invariant is known to hold on every state at depth d, that fact is asserted as a lemma:
it is implied by the unrolling, so it changes no answer, but it cuts the search. Every
counterexample is replayed on the concrete model before it is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from invariants import INVARIANTS
from model.actions import Instance
from model.logic import CONCRETE, SYMBOLIC
from model.state import State, rebuild
from model.state import leaves as state_leaves
from model.system import System
from search.engines.symbolic import (
    as_z3,
    concretize,
    equal_to,
    flat,
    fresh_state,
    leaf_reads,
    raise_if_interrupted,
    same_state,
)
from search.result import HOLDS, UNKNOWN, VIOLATED, InternalError, Result

ENGINE = "bmc"
_NO_TIMEOUT_MS = 4294967295  # z3's own default: no limit

Progress = Callable[[int, str], None]


def _seed() -> None:
    # z3's heuristics are seeded; fixing them makes runs (and reported traces) repeatable
    z3.set_param("smt.random_seed", 0)
    z3.set_param("sat.random_seed", 0)
    # The incremental SAT core re-runs clause subsumption on every check; with hundreds
    # of small assumption queries per unrolling that costs more than it saves (measured
    # 2026-11-26, default bounds, depth 10: v5.19 162 s -> 92 s, v6.0 101 s -> 73 s)
    z3.set_param("sat.subsumption", False)


def new_solver() -> z3.Solver:
    """One incremental QF_BV solver, seeded."""
    _seed()
    s = z3.SolverFor("QF_BV")
    s.set("random_seed", 0)
    return s


def _is_same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    return isinstance(a, z3.ExprRef) and isinstance(b, z3.ExprRef) and a.eq(b)


@dataclass
class Encoding:
    """The step relation of one configuration over template states `cur` -> `nxt`."""

    system: System
    cur: State
    nxt: State
    sel: Any
    relation: Any  # z3 Bool over cur, nxt and sel
    invariants: dict[str, Any]  # name -> z3 Bool (or Python bool) over cur
    # per instance: its guard, and the leaves (indices into flat(cur)) it writes with
    # their new values; None for an instance that is never enabled
    actions: list[tuple[Any, dict[int, Any]] | None] = field(default_factory=list)
    stutter: bool = False
    # which leaves each guard, new value and invariant reads: computed when first asked
    _reads: _Reads | None = field(default=None, init=False, repr=False)
    # each invariant's top-level conjuncts (`_conjuncts`) over `cur`: computed when first asked
    _parts: dict[str, list[Any]] | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, system: System, stutter: bool = False) -> Encoding:
        """With `stutter`, selector value len(instances) is a step that changes nothing
        (scenarios: fewer kernel steps than the slots between two calls)."""
        template = system.initial()
        cur = fresh_state(template, "cur")
        nxt = fresh_state(template, "nxt")
        n = len(system.instances)
        sel = z3.BitVec("sel", max(1, (n if stutter else n - 1).bit_length()))
        cur_leaves = flat(cur)
        actions: list[tuple[Any, dict[int, Any]] | None] = []
        for inst in system.instances:
            g = inst.guard(cur, system.ctx, SYMBOLIC)
            if g is False or (not isinstance(g, bool) and z3.is_false(g)):
                actions.append(None)
                continue  # never enabled: its effect can never be selected either
            out = flat(inst.effect(cur, system.ctx, SYMBOLIC))
            actions.append((g, {j: new for j, (old, new) in enumerate(zip(cur_leaves, out, strict=True))
                                if not _is_same(old, new)}))
        relation = _relation(cur_leaves, flat(nxt), sel, actions, stutter)
        invs = {name: f(cur, system.ctx, SYMBOLIC) for name, f in INVARIANTS.items()}
        return cls(system, cur, nxt, sel, relation, invs, actions, stutter)

    def cone(self, names: list[str]) -> tuple[frozenset[int], frozenset[int]]:
        """The cone of influence of invariants `names`: (leaves, instances).

        The smallest set of leaves V and instances K such that the invariants read only
        V; every instance that writes a leaf of V is in K; and the guard of every
        instance of K, and every value it writes to a leaf of V, read only V. Built by
        closing the invariants' reads under "who writes it, and what does that read".

        Why checking the invariants on `restrict(V, K)` gives every verdict and every
        shortest depth of the whole relation (`check` relies on it):
        (a) every path of the restricted relation is the projection onto V of a path of
            the whole one with the same instances: from the initial state, each instance
            of K is enabled exactly when its guard, over V, holds, and writes V alone
            from V; the leaves outside V are not constrained at all;
        (b) every path of the whole relation, with the steps of instances outside K
            dropped, projects onto V as a path of the restricted one, no longer: those
            steps leave V as it was, and the remaining steps see the same V.
        The invariants read only V, so a violation at depth d of the whole relation is
        one at depth <= d of the restricted one (b), and one at depth d of the restricted
        one is one at depth d of the whole (a): the shortest depths are equal, and "no
        violation within N steps" holds in both or in neither."""
        r = self._analysis()
        leaves: set[int] = set()
        for name in names:
            leaves |= r.invariant[name]
        keep: set[int] = set()
        grown = True
        while grown:
            grown = False
            for i, act in enumerate(self.actions):
                if act is None:
                    continue
                written = [j for j in act[1] if j in leaves]
                if not written:
                    continue
                need = set(r.guard[i])
                for j in written:
                    need |= r.value[i][j]
                if i not in keep:
                    keep.add(i)
                    grown = True
                if not need <= leaves:
                    leaves |= need
                    grown = True
        return frozenset(leaves), frozenset(keep)

    def invariant_reads(self, name: str) -> frozenset[int]:
        """The leaves invariant `name` reads."""
        return self._analysis().invariant[name]

    def restrict(self, leaves: frozenset[int], instances: frozenset[int]) -> Encoding:
        """The same encoding with only `instances` selectable and only `leaves` constrained
        from one state to the next (the others are left free): see `cone`."""
        acts = [a if i in instances else None for i, a in enumerate(self.actions)]
        relation = _relation(flat(self.cur), flat(self.nxt), self.sel, acts, self.stutter,
                             leaves)
        out = Encoding(self.system, self.cur, self.nxt, self.sel, relation, self.invariants,
                       acts, self.stutter)
        out._reads = self._reads
        return out

    def _analysis(self) -> _Reads:
        if self._reads is None:
            self._reads = _Reads.of(self)
        return self._reads

    def _pairs(self, tmpl: State, real: State) -> list[tuple[Any, Any]]:
        return list(zip(flat(tmpl), flat(real), strict=True))

    def conjuncts(self) -> dict[str, list[Any]]:
        """Each invariant's top-level conjuncts over `cur` (`_conjuncts`), as z3 Bools."""
        if self._parts is None:
            self._parts = {name: [as_z3(c) for c in _conjuncts(term)]
                           for name, term in self.invariants.items()}
        return self._parts

    def conjuncts_at(self, s: State) -> dict[str, list[Any]]:
        """`conjuncts()` re-expressed over `s`, with one substitution for all of them:
        z3's substitute converts every (template, state) pair on each call, which cost
        more than the terms (a tenth of a depth-7 check, measured on v5.19)."""
        parts = self.conjuncts()
        every = [c for cs in parts.values() for c in cs]
        done = z3.substitute(z3.And(*every), *self._pairs(self.cur, s)) if every else None
        kids = done.children() if done is not None else []
        if len(kids) != len(every):  # z3 folded the conjunction: one at a time instead
            kids = [z3.substitute(c, *self._pairs(self.cur, s)) for c in every]
        out: dict[str, list[Any]] = {}
        it = iter(kids)
        for name, cs in parts.items():
            out[name] = [next(it) for _ in cs]
        return out

    def step(self, a: State, b: State, sel: Any) -> Any:
        """The transition relation instantiated between states `a` and `b`."""
        pairs = self._pairs(self.cur, a) + self._pairs(self.nxt, b) + [(self.sel, sel)]
        return z3.substitute(self.relation, *pairs)

    def invariant(self, name: str, s: State) -> Any:
        """Invariant `name` on symbolic state `s`, as a z3 Bool."""
        return as_z3(self.instantiate(self.invariants[name], s))

    def instantiate(self, term: Any, s: State) -> Any:
        """A term over the template state `cur`, re-expressed over `s`."""
        if isinstance(term, bool):
            return term
        return z3.substitute(term, *self._pairs(self.cur, s))


def _relation(cur: list[Any], nxt: list[Any], sel: Any,
              actions: list[tuple[Any, dict[int, Any]] | None], stutter: bool,
              leaves: frozenset[int] | None = None) -> Any:
    """z3: `sel` names an enabled instance (or the stutter step) and each leaf of `nxt`
    (of `leaves`, if given) is the value that instance writes, the old one if it writes
    none. Each leaf's `If` chain lists only the instances that write it."""
    enabled: list[Any] = []
    writers: list[list[tuple[int, Any]]] = [[] for _ in cur]
    for i, act in enumerate(actions):
        if act is None:
            continue
        g = act[0]
        enabled.append(z3.And(sel == i, as_z3(g)) if g is not True else sel == i)
        for j, new in act[1].items():
            writers[j].append((i, new))
    if stutter:
        enabled.append(sel == len(actions))
    conj = [z3.Or(*enabled) if enabled else z3.BoolVal(False)]
    for j, (old, new, ws) in enumerate(zip(cur, nxt, writers, strict=True)):
        if leaves is not None and j not in leaves:
            continue
        value: Any = old
        for i, v in reversed(ws):
            value = z3.If(sel == i, as_z3(v), value)
        conj.append(new == value)
    return z3.And(*conj)




@dataclass
class _Reads:
    """Which leaves each guard, each written value and each invariant of an encoding read
    (indices into flat(cur)), from the z3 terms themselves."""

    guard: list[frozenset[int]]  # per instance (empty for one never enabled)
    value: list[dict[int, frozenset[int]]]  # per instance: leaf written -> leaves read
    invariant: dict[str, frozenset[int]]

    @classmethod
    def of(cls, enc: Encoding) -> _Reads:
        terms: list[Any] = []
        for act in enc.actions:
            if act is not None:
                terms.append(as_z3(act[0]))
                terms.extend(as_z3(v) for v in act[1].values())
        names = list(enc.invariants)
        terms.extend(as_z3(enc.invariants[n]) for n in names)
        found = iter(leaf_reads(terms, flat(enc.cur)))
        guard: list[frozenset[int]] = []
        value: list[dict[int, frozenset[int]]] = []
        for act in enc.actions:
            if act is None:
                guard.append(frozenset())
                value.append({})
                continue
            guard.append(next(found))
            value.append({j: next(found) for j in act[1]})
        return cls(guard, value, {n: next(found) for n in names})


class Unrolling:
    """States 0..k of one path and the transitions between them, in one solver."""

    def __init__(self, enc: Encoding, solver: z3.Solver, tag: str, initial: bool) -> None:
        self.enc = enc
        self.solver = solver
        self.tag = tag
        self.states: list[State] = [fresh_state(enc.cur, f"{tag}0")]
        self.sels: list[Any] = []
        self._conjuncts: dict[int, dict[str, list[Any]]] = {}
        if initial:
            solver.add(equal_to(self.states[0], enc.system.initial()))

    @property
    def depth(self) -> int:
        return len(self.states) - 1

    def extend(self) -> None:
        k = len(self.states)
        s = fresh_state(self.enc.cur, f"{self.tag}{k}")
        sel = z3.BitVec(f"{self.tag}sel{k - 1}", self.enc.sel.size())
        self.solver.add(self.enc.step(self.states[-1], s, sel))
        self.states.append(s)
        self.sels.append(sel)

    def conjuncts(self, d: int) -> dict[str, list[Any]]:
        """Every invariant's conjuncts (`Encoding.conjuncts`) on state `d` of the path."""
        if d not in self._conjuncts:
            self._conjuncts[d] = self.enc.conjuncts_at(self.states[d])
        return self._conjuncts[d]

    def invariant(self, name: str, d: int) -> Any:
        """Invariant `name` on state `d` of the path, as a z3 Bool."""
        return z3.And(*self.conjuncts(d)[name])

    def decode(self, model: z3.ModelRef, depth: int) -> list[Instance]:
        out = []
        for sel in self.sels[:depth]:
            idx = model.eval(sel, model_completion=True).as_long()
            if idx >= len(self.enc.system.instances):
                raise InternalError(f"bmc: selector {sel} = {idx} names no instance")
            out.append(self.enc.system.instances[idx])
        return out


def replay(system: System, invariant: str, steps: Sequence[Instance],
           expected_states: Sequence[State] | None = None,
           compare: frozenset[int] | None = None) -> list[State]:
    """Run `steps` on the concrete model from the initial state: every guard must hold,
    `invariant` must hold on every state but the last and fail on the last. If given,
    the states z3 claimed must be exactly the concrete ones (in the leaves `compare`
    lists, by index in `leaves` order, if given: a cone leaves the others free). Raises
    InternalError otherwise: the symbolic and the concrete interpretation disagree."""
    inv = INVARIANTS[invariant]
    ctx = system.ctx
    s = system.initial()
    states = [s]
    for k, inst in enumerate(steps):
        if not inst.guard(s, ctx, CONCRETE):
            raise InternalError(
                f"REPLAY FAILED: {invariant}: step {k + 1} {inst} is not enabled on the "
                f"concrete model; the symbolic encoding disagrees with the model")
        s = system.step(s, inst)
        states.append(s)
    for k, st in enumerate(states):
        holds = bool(inv(st, ctx, CONCRETE))
        last = k == len(states) - 1
        if last and holds:
            raise InternalError(
                f"REPLAY FAILED: {invariant} holds on the concrete model after "
                f"{' ; '.join(map(str, steps))}, but z3 claimed a violation at depth {k}")
        if not last and not holds:
            raise InternalError(
                f"REPLAY FAILED: {invariant} already fails at depth {k} < {len(steps)}; "
                "the counterexample is not a shortest one")
    if expected_states is not None:
        for k, (want, got) in enumerate(zip(expected_states, states, strict=True)):
            if compare is not None:
                want = rebuild(want, [b if j in compare else a for j, ((_, a), (_, b)) in
                                      enumerate(zip(state_leaves(got), state_leaves(want),
                                                    strict=True))])
            if not same_state(got, want):
                diff = [p for (p, a), (_, b) in zip(state_leaves(want), state_leaves(got),
                                                    strict=True) if a != b]
                raise InternalError(
                    f"REPLAY FAILED: {invariant}: state {k} of the z3 model differs from "
                    f"the concrete replay in {', '.join(diff[:8])}")
    return states


def _remaining_ms(deadline: float | None) -> int:
    if deadline is None:
        return _NO_TIMEOUT_MS
    return max(1, int((deadline - time.monotonic()) * 1000))


class _Group:
    """Invariants that share a cone of influence, checked on one unrolling of it."""

    def __init__(self, enc: Encoding, names: list[str], leaves: frozenset[int] | None) -> None:
        self.enc = enc
        self.names = names
        self.leaves = leaves  # None: the whole state
        self.path = Unrolling(enc, new_solver(), "s", initial=True)

    def covers(self, reads: frozenset[int]) -> bool:
        return self.leaves is None or reads <= self.leaves


def _groups(enc: Encoding, names: list[str], cones: bool) -> tuple[list[_Group], dict[str, _Group]]:
    """One group per distinct cone of the invariants `names` (in the order of their first
    invariant); without `cones`, or where a cone is everything, the whole relation."""
    if not cones:
        g = _Group(enc, names, None)
        return [g], dict.fromkeys(names, g)
    live = frozenset(i for i, a in enumerate(enc.actions) if a is not None)
    everything = frozenset(range(len(flat(enc.cur))))
    by_cone: dict[tuple[frozenset[int], frozenset[int]], list[str]] = {}
    for name in names:
        by_cone.setdefault(enc.cone([name]), []).append(name)
    groups: list[_Group] = []
    of: dict[str, _Group] = {}
    for (leaves, keep), members in by_cone.items():
        if leaves == everything and keep == live:
            g = _Group(enc, members, None)
        else:
            g = _Group(enc.restrict(leaves, keep), members, leaves)
        groups.append(g)
        for name in members:
            of[name] = g
    return groups, of


def check(system: System, invariants: list[str], depth: int, timeout: float | None = None,
          query_timeout: float | None = None,
          progress: Progress | None = None, cones: bool = False) -> dict[str, Result]:
    """Look for a shortest violation of each invariant within `depth` steps.

    VIOLATED with the steps of a shortest counterexample (replayed on the concrete model),
    HOLDS with `depth` when no path of at most `depth` steps violates it, UNKNOWN when z3
    answered unknown, `timeout` (seconds, for the whole call) ran out, or one solver
    query took longer than `query_timeout` seconds. `seconds` of a
    result is the wall time from the start of the call until that invariant was settled.

    With `cones`, each invariant is checked on the unrolling of its cone of influence
    only (`Encoding.cone`: the leaves it depends on and the instances that write them),
    invariants with the same cone on one unrolling: the same verdicts and shortest depths
    as on the whole relation (argued in `Encoding.cone`, tested in tests/test_cone.py).
    It is off by default because it is slower here (measured 2026-11-26, v5.19: 222 s
    instead of 146 s of CPU to depth 6 at the wide scope): the cones keep 40 to 70% of
    the leaves and nearly every instance, and separate solvers lose the lemmas one
    invariant's proof gives the others, which are worth more. A counterexample found in
    a cone is a real path, replayed in full on the concrete model."""
    for name in invariants:
        if name not in INVARIANTS:
            raise KeyError(f"unknown invariant {name!r}")
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    enc = Encoding.build(system)
    results: dict[str, Result] = {}
    pending = list(dict.fromkeys(invariants))
    groups, group_of = _groups(enc, pending, cones)
    for d in range(depth + 1):
        if d > 0:
            for g in groups:
                if any(name in pending for name in g.names):
                    g.path.extend()
        for name in list(pending):
            if progress is not None:
                progress(d, name)
            if deadline is not None and time.monotonic() >= deadline:
                results[name] = _unknown(name, d, t0, f"timeout after {timeout}s at depth {d}")
                pending.remove(name)
                continue
            g = group_of[name]
            r = _check_one(g.path, name, d, deadline, t0, query_timeout, g.leaves)
            if r is not None:
                results[name] = r
                pending.remove(name)
                continue
            # no path of d steps violates it: a fact about every state at depth d, and
            # asserting it prunes the search for the other invariants and deeper ones
            # (measured: v5.18-rc1 to depth 4 in 40 s instead of 368 s). It holds on every
            # group's states at depth d (each is the projection of a real path's, `cone`),
            # and is worth stating where the group's cone holds all the leaves it reads.
            reads = enc.invariant_reads(name) if cones else frozenset()
            for h in groups:
                if h.path.depth >= d and (h is g or h.covers(reads)):
                    h.path.solver.add(h.path.invariant(name, d))
        if not pending:
            break
    for name in pending:
        results[name] = Result(name, ENGINE, HOLDS, depth, [], time.monotonic() - t0,
                               f"no violation within {depth} steps")
    return {name: results[name] for name in dict.fromkeys(invariants)}


def _unknown(name: str, d: int, t0: float, why: str) -> Result:
    checked = f"no violation within {d - 1} steps" if d > 0 else "nothing checked"
    return Result(name, ENGINE, UNKNOWN, max(d - 1, 0), [], time.monotonic() - t0,
                  f"{why}; {checked}")


def _conjuncts(term: Any) -> list[Any]:
    """Terms whose conjunction is the invariant's term, as small as plain logic makes
    them: nested `And`s flattened, and `Or(x, And(b1, ..., bn))` (an implication whose
    conclusion is a conjunction: `L.implies`) distributed into `Or(x, b1), ..., Or(x, bn)`.
    Both rewrites keep the conjunction equivalent to the term, in a fixed order."""
    if isinstance(term, bool):
        return [term]
    out: list[Any] = []
    stack = [term]
    while stack:
        t = stack.pop()
        if z3.is_and(t):
            stack.extend(reversed(t.children()))
            continue
        if z3.is_or(t):
            kids = t.children()
            ands = [k for k, c in enumerate(kids) if z3.is_and(c)]
            if len(ands) == 1:
                rest = [c for k, c in enumerate(kids) if k != ands[0]]
                stack.extend(reversed([z3.Or(*rest, b) for b in kids[ands[0]].children()]))
                continue
        out.append(t)
    return out


def _check_one(path: Unrolling, name: str, d: int, deadline: float | None,
               t0: float, query_timeout: float | None = None,
               leaves: frozenset[int] | None = None) -> Result | None:
    """Is `name` violated at exactly depth `d` (on a path that reaches it)? None: no.

    One query per top-level conjunct of the invariant (most are a conjunction over every
    frame, area and pointer), each conjunct proved at depth `d` asserted before the next
    query. The invariant is violated at depth d exactly when some conjunct is, so the
    answer is the same; but a small goal is a much easier refutation than the negation
    of the whole conjunction, and each proved conjunct is a lemma for the rest (measured
    on v5.19 at the wide scope: refcount_sanity's query at depth 7, 600 s of CPU as one
    goal)."""
    for k, conj in enumerate(path.conjuncts(d)[name]):
        bad = z3.Not(conj)
        lit = z3.Bool(f"check.{name}.{d}.{k}")
        path.solver.add(z3.Implies(lit, bad))
        ms = _remaining_ms(deadline)
        if query_timeout is not None:
            ms = min(ms, max(1, int(query_timeout * 1000)))
        path.solver.set("timeout", ms)
        answer = path.solver.check(lit)
        if answer == z3.unsat:
            # proved at depth d: a fact about every state there, a lemma for what follows
            path.solver.add(z3.Not(lit))
            path.solver.add(z3.Not(bad))
            continue
        if answer == z3.unknown:
            raise_if_interrupted(path.solver)
            why = path.solver.reason_unknown()
            return _unknown(name, d, t0, f"z3 answered unknown ({why}) at depth {d}")
        model = path.solver.model()
        steps = path.decode(model, d)
        claimed = [concretize(model, st) for st in path.states[: d + 1]]
        replay(path.enc.system, name, steps, claimed, leaves)
        return Result(name, ENGINE, VIOLATED, d, steps, time.monotonic() - t0,
                      f"shortest: no violation within {d - 1} steps" if d else "initial state")
    return None
