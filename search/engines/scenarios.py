"""Running a scenario: its calls on the model of one kernel, every invariant checked after
every call.

A scenario whose calls are all determined runs on the concrete model. One with `*`
parameters, an environment choice (a page-table allocation that may fail) or interleaved
steps of the modelled kernel asks "can any choice break an invariant?": BMC answers it,
constrained to the scenario's calls, and every witness is replayed on the concrete model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from invariants import INVARIANTS
from model.actions import VOCABULARY, Action, Instance
from model.logic import CONCRETE
from model.state import BAD_NONE, State
from model.system import System
from search.engines.bmc import Encoding, Unrolling, new_solver
from search.engines.symbolic import concretize, raise_if_interrupted, same_state
from search.result import InternalError
from search.traces.scenario_file import STAR, Call, Name, Scenario, ScenarioError, Star, _safe

# what a named object is, by the name of the parameter that takes it
_KIND = {"area": "area", "addr": "area", "page": "page", "ref": "page", "kaddr": "page", "prog": "prog"}

VIOLATED, HOLDS, UNKNOWN, NOT_REACHED = "violated", "holds", "unknown", "not reached"

# calls after which the scenario no longer holds the object it passed
FREES = frozenset({"vfree", "kvfree", "module_memfree", "__free_pages", "free_pages",
                   "bpf_prog_pack_free", "bpf_jit_binary_free"})


@dataclass
class Verdict:
    invariant: str
    status: str
    call: int | None = None  # 1-based index of the scenario call after which it fails
    steps: list[Instance] = field(default_factory=list)  # the run up to the violation
    calls_at: list[int] = field(default_factory=list)  # step index -> scenario call (0: interleaved)
    detail: str = ""


@dataclass
class Outcome:
    """One scenario under one kernel profile."""

    scenario: Scenario
    system: System
    engine: str  # "run" (concrete) or "bmc"
    interleave: int
    verdicts: dict[str, Verdict]
    impossible: tuple[int, str] | None = None  # (call, reason): the run stops there
    seconds: float = 0.0
    # what the kernel printed on the way: (call, frame, BAD_* reason) of "BUG: Bad page state"
    reports: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def violated(self) -> list[Verdict]:
        return [v for v in self.verdicts.values() if v.status == VIOLATED]


# ---- resolving a call against the vocabulary ------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """One call matched to one action: literal parameters fixed, names to look up."""

    call: Call
    action: Action
    fixed: dict[str, Any]
    named: dict[str, str]  # param -> name of an earlier call's object

    def candidates(self, system: System) -> list[Instance]:
        return [i for i in system.instances
                if i.action is self.action and all(i.params[k] == v for k, v in self.fixed.items())]


def _domains(action: Action, system: System) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {p: [] for p in action.params}
    for q in action.domain(system.ctx):
        for k, v in q.items():
            if v not in out[k]:
                out[k].append(v)
    return out


def _bind(call: Call, action: Action) -> dict[str, Any] | None:
    """The call's arguments by parameter name, or None when they do not fit the action."""
    free = [p for p in action.params if p not in action.implicit]
    if len(call.args) > len(free):
        return None
    given: dict[str, Any] = dict(zip(free, call.args, strict=False))
    for k, v in call.kwargs:
        if k not in action.params or k in given:
            return None
        given[k] = v
    if any(p not in given and p not in action.implicit for p in action.params):
        return None
    return given


def resolve(call: Call, system: System, kinds: dict[str, str], where: str) -> Resolved:
    """Match `call` to an action of the scenario vocabulary. ScenarioError for an unknown
    call or parameter, a value outside the domain, or a name of the wrong kind."""
    overloads = [a for (n, _), a in VOCABULARY.items() if n == call.name]
    if not overloads:
        raise ScenarioError(f"{where}: unknown call {_safe(call.name)!r} (python -m search list)")
    fits = [(a, g) for a in overloads if (g := _bind(call, a)) is not None]
    if len(fits) > 1:  # the calls real code makes win over the built-in drivers' steps
        fits = [f for f in fits if not f[0].builtin] or fits
    if not fits:
        sigs = "; ".join(f"{a.name}({', '.join(a.params)})" for a in overloads)
        raise ScenarioError(f"{where}: {_safe(call.text)} fits no signature of {call.name}: {sigs}")
    if len(fits) > 1:
        raise ScenarioError(f"{where}: {_safe(call.text)} is ambiguous; name the parameters")
    action, given = fits[0]
    doms = _domains(action, system)
    fixed: dict[str, Any] = {}
    named: dict[str, str] = {}
    for k, v in given.items():
        if isinstance(v, Star):
            continue
        if isinstance(v, Name) and v.text in kinds:
            want = _KIND.get(k)
            if want is None or want != kinds[v.text]:
                raise ScenarioError(f"{where}: {v.text} is a {kinds[v.text]}, but {call.name}'s "
                                    f"parameter {k} takes {want or 'a value'}")
            named[k] = v.text
            continue
        lit = v.text if isinstance(v, Name) else v
        # an empty domain: the call does not exist in this kernel, which the run reports
        if doms[k] and lit not in doms[k]:
            shown = ", ".join(map(str, doms[k][:12])) or "nothing under this profile and bounds"
            raise ScenarioError(f"{where}: {k}={_safe(str(lit))} is outside the domain of "
                                f"{call.name}.{k}: {shown}")
        fixed[k] = lit
    return Resolved(call, action, fixed, named)


def resolve_all(scenario: Scenario, system: System) -> list[Resolved]:
    kinds: dict[str, str] = {}
    out = []
    for call in scenario.calls:
        where = f"{_safe(scenario.path)}:{call.line}"
        r = resolve(call, system, kinds, where)
        if call.binds:
            ret = r.action.returns
            if ret is None:
                raise ScenarioError(f"{where}: {call.name} returns nothing to name")
            kinds[call.binds] = _KIND.get(ret, "value")
        out.append(r)
    return out


def needs_search(scenario: Scenario, resolved: Sequence[Resolved], system: System) -> bool:
    """A choice is left to the engine: a `*`, or a fault the environment picks."""
    for r in resolved:
        given = {k for k, _ in r.call.kwargs} | set(
            [p for p in r.action.params if p not in r.action.implicit][: len(r.call.args)])
        if any(isinstance(v, Star) for v in (*r.call.args, *(v for _, v in r.call.kwargs))):
            return True
        if system.faults and "fail" in r.action.params and "fail" not in given:
            return True
    return False


# ---- concrete run ---------------------------------------------------------------------


def why_impossible(r: Resolved, cands: Sequence[Instance], s: State, system: System) -> str:
    """The kernel's reason a call cannot happen: the sentence of the first false check of
    the candidate that got furthest through its checks."""
    if not cands:
        return f"{r.action.name} does not exist in this kernel (the profile has no such step)"
    best, depth = cands[0], -1
    for inst in cands:
        checks = inst.action.checks
        k = next((j for j, (_, g) in enumerate(checks)
                  if not g(s, inst.params, system.ctx, CONCRETE)), len(checks))
        if k > depth:
            best, depth = inst, k
    why = best.action.why_not(s, best.params, system.ctx, CONCRETE)
    if why is None:
        from search.traces.replay import explain_guard  # the built-in steps: their source text

        why = explain_guard(best, s, system)
    return why


def run_concrete(scenario: Scenario, resolved: Sequence[Resolved], system: System) -> Outcome | None:
    """Execute the calls; None when a call leaves a choice to the engine after all."""
    t0 = time.monotonic()
    s = system.initial()
    objects: dict[str, Any] = {}
    steps: list[Instance] = []
    verdicts = {name: Verdict(name, HOLDS) for name in INVARIANTS}
    impossible = None
    reports: list[tuple[int, int, int]] = []
    for k, r in enumerate(resolved, start=1):
        fixed = dict(r.fixed)
        fixed.update({p: objects[n] for p, n in r.named.items()})
        cands = [i for i in r.candidates(system) if all(i.params[p] == v for p, v in fixed.items())]
        enabled = [i for i in cands if i.guard(s, system.ctx, CONCRETE)]
        if not enabled:
            impossible = (k, why_impossible(r, cands, s, system))
            break
        if len(enabled) > 1:
            return None
        inst = enabled[0]
        prev, s = s, system.step(s, inst)
        steps.append(inst)
        reports += [(k, f, new) for f, (old, new) in enumerate(zip(prev.pages.bad, s.pages.bad, strict=True))
                    if old == BAD_NONE and new != BAD_NONE]
        if r.call.binds and r.action.returns:
            objects[r.call.binds] = inst.params[r.action.returns]
        for name, v in verdicts.items():
            if v.status == HOLDS and not INVARIANTS[name](s, system.ctx, CONCRETE):
                verdicts[name] = Verdict(name, VIOLATED, k, list(steps), list(range(1, k + 1)))
    if impossible is not None:
        for name, v in verdicts.items():
            if v.status == HOLDS:
                verdicts[name] = Verdict(name, NOT_REACHED, detail=f"holds up to call {impossible[0] - 1}")
    return Outcome(scenario, system, "run", 0, verdicts, impossible, time.monotonic() - t0, reports)


# ---- BMC constrained by the scenario ----------------------------------------------------


class _Path:
    """One unrolling whose steps are the scenario's calls, with up to `k` steps of the
    built-in kernel (or none: a stutter) between two consecutive calls."""

    def __init__(self, system: System, resolved: Sequence[Resolved], k: int,
                 timeout_ms: int | None) -> None:
        self.system = system
        self.enc = Encoding.build(system, stutter=True)
        self.solver = new_solver()
        if timeout_ms is not None:
            self.solver.set("timeout", timeout_ms)
        self.path = Unrolling(self.enc, self.solver, "sc", initial=True)
        self.index = {id(i): n for n, i in enumerate(system.instances)}
        self.stutter = len(system.instances)
        self.builtin = [n for n, i in enumerate(system.instances) if i.action.builtin]
        self.resolved = list(resolved)
        self.k = k
        self.after_call: list[int] = []  # state index after each call
        self.call_of_step: list[int] = []  # per step: the scenario call (1-based) or 0
        self.objects: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}
        self.owned: set[str] = set()  # the scenario's live objects: the kernel's steps keep off

    def _keep_off(self, sel: Any) -> list[Any]:
        """An interleaved step of the modelled kernel never operates on an object the
        scenario holds (frees its buffer, writes its page): other code has no pointer to
        it. It may allocate anything, and use what the scenario has freed."""
        out = []
        for n in self.builtin:
            inst = self.system.instances[n]
            for p, v in inst.items:
                if p in inst.action.implicit:
                    continue
                kind = "area" if p == "frame" else _KIND.get(p)
                if p == "frame":
                    v = v // self.system.bounds.hpage
                for name in self.owned:
                    if self.kinds[name] == kind:
                        out.append(z3.Implies(sel == n, self.objects[name] != z3.BitVecVal(v, 16)))
        return out

    def _sel_in(self, sel: Any, idxs: Sequence[int]) -> Any:
        return z3.Or(*[sel == i for i in idxs]) if idxs else z3.BoolVal(False)

    def add_call(self, j: int) -> None:
        """Unroll the interleaving slots before call `j` (0-based) and the call itself."""
        if j > 0:
            for _ in range(self.k):
                self.path.extend()
                sel = self.path.sels[-1]
                self.solver.add(self._sel_in(sel, [*self.builtin, self.stutter]), *self._keep_off(sel))
                self.call_of_step.append(0)
        r = self.resolved[j]
        self.path.extend()
        sel = self.path.sels[-1]
        cands = r.candidates(self.system)
        self.solver.add(self._sel_in(sel, [self.index[id(i)] for i in cands]))
        width = 16
        for p, name in r.named.items():
            obj = self.objects[name]
            self.solver.add(z3.And(*[z3.Implies(sel == self.index[id(i)],
                                                obj == z3.BitVecVal(i.params[p], width))
                                     for i in cands]))
        if r.call.binds and r.action.returns:
            obj = z3.BitVec(f"obj.{r.call.binds}.{j}", width)
            self.objects[r.call.binds] = obj
            self.kinds[r.call.binds] = _KIND.get(r.action.returns, "value")
            self.owned.add(r.call.binds)
            self.solver.add(z3.And(*[z3.Implies(sel == self.index[id(i)],
                                                obj == z3.BitVecVal(i.params[r.action.returns], width))
                                     for i in cands]))
        if r.action.name in FREES:
            self.owned -= set(r.named.values())
        self.call_of_step.append(j + 1)
        self.after_call.append(self.path.depth)

    def check(self, *assumptions: Any) -> Any:
        answer = self.solver.check(*assumptions)
        if answer == z3.unknown:
            raise_if_interrupted(self.solver)
        return answer

    def witness(self, upto: int) -> list[tuple[Instance, int]]:
        """The steps (without stutters) of the current model up to state `upto`."""
        m = self.solver.model()
        out = []
        for sel, call in zip(self.path.sels[:upto], self.call_of_step[:upto], strict=False):
            idx = m.eval(sel, model_completion=True).as_long()
            if idx == self.stutter:
                continue
            if idx > self.stutter:
                raise InternalError(f"scenario bmc: selector {sel} = {idx} names no instance")
            out.append((self.system.instances[idx], call))
        # what z3 claims must be what the concrete model does (checked by _replay)
        self.claimed = [concretize(m, s) for s in self.path.states[: upto + 1]]
        return out


def _replay(system: System, steps: Sequence[Instance], invariant: str | None) -> list[State]:
    """Run a witness on the concrete model: every guard must hold; for an invariant, it must
    hold before the last step and fail after it. InternalError otherwise."""
    s = system.initial()
    states = [s]
    for k, inst in enumerate(steps, start=1):
        if not inst.guard(s, system.ctx, CONCRETE):
            raise InternalError(f"scenario bmc: step {k} {inst} is not enabled on the concrete model")
        s = system.step(s, inst)
        states.append(s)
    if invariant is not None:
        inv = INVARIANTS[invariant]
        ok = [bool(inv(x, system.ctx, CONCRETE)) for x in states]
        if ok[-1] or not all(ok[:-1]):
            raise InternalError(f"scenario bmc: the witness for {invariant} does not violate it "
                                "exactly at its last step on the concrete model")
    return states


def run_bmc(scenario: Scenario, resolved: Sequence[Resolved], system: System, interleave: int,
            timeout: float | None = None,
            progress: Callable[[str], None] | None = None) -> Outcome:
    """Can any choice (a `*`, a fault, up to `interleave` kernel steps between two calls)
    make a call break an invariant that held until then?"""
    t0 = time.monotonic()
    ms = None if timeout is None else max(1, int(timeout * 1000))
    p = _Path(system, resolved, interleave, ms)
    verdicts: dict[str, Verdict] = {}
    impossible = None
    for j in range(len(resolved)):
        p.add_call(j)
        answer = p.check()
        if answer == z3.unsat:
            impossible = (j + 1, _impossible_reason(p, j, system))
            break
        if answer == z3.unknown:
            impossible = (j + 1, f"unknown: z3 could not decide whether call {j + 1} can happen "
                                 f"({p.solver.reason_unknown()})")
            break
    n_calls = len(p.after_call) - (1 if impossible else 0)
    for name in INVARIANTS:
        if progress is not None:
            progress(name)
        verdicts[name] = _first_breaking_call(p, name, n_calls, system)
    if impossible is not None:
        for name, v in verdicts.items():
            if v.status == HOLDS:
                verdicts[name] = Verdict(name, NOT_REACHED, detail=f"holds up to call {impossible[0] - 1}")
    return Outcome(scenario, system, "bmc", interleave, verdicts, impossible, time.monotonic() - t0)


def _impossible_reason(p: _Path, j: int, system: System) -> str:
    """Explain on a concrete run of the calls before `j` (any witness of them)."""
    if j == 0:
        s = system.initial()
    else:
        sub = _Path(system, p.resolved[:j], p.k, None)
        for i in range(j):
            sub.add_call(i)
        if sub.check() != z3.sat:
            return f"call {j + 1} cannot happen after any choice of the earlier calls"
        steps = [inst for inst, _ in sub.witness(sub.path.depth)]
        s = _replay(system, steps, None)[-1]
    r = p.resolved[j]
    cands = r.candidates(system)
    enabled = [i for i in cands if i.guard(s, system.ctx, CONCRETE)]
    if enabled:
        return f"{r.call.name}'s object is not the one an earlier call named under any choice"
    return why_impossible(r, cands, s, system) + " (under every choice)"


def _first_breaking_call(p: _Path, name: str, n_calls: int, system: System) -> Verdict:
    p.solver.push()
    try:
        held_upto = 0  # the invariant is asserted on states 0..held_upto-1
        for j in range(n_calls):
            at = p.after_call[j]
            for d in range(held_upto, at):
                p.solver.add(p.enc.invariant(name, p.path.states[d]))
            held_upto = at
            lit = z3.Bool(f"break.{name}.{j}")
            p.solver.add(z3.Implies(lit, z3.Not(p.enc.invariant(name, p.path.states[at]))))
            answer = p.check(lit)
            if answer == z3.unknown:
                return Verdict(name, UNKNOWN, j + 1,
                               detail=f"z3 answered unknown ({p.solver.reason_unknown()}) at call {j + 1}; "
                                      f"no violation by calls 1..{j}")
            if answer == z3.sat:
                pairs = p.witness(at)
                steps = [i for i, _ in pairs]
                states = _replay(system, steps, name)
                if not same_state(states[-1], p.claimed[-1]):
                    raise InternalError(f"scenario bmc: z3's state after call {j + 1} differs from "
                                        "the concrete replay")
                return Verdict(name, VIOLATED, j + 1, steps, [c for _, c in pairs])
        return Verdict(name, HOLDS, detail=f"no choice breaks it in {n_calls} calls")
    finally:
        p.solver.pop()


def run(scenario: Scenario, system: System, interleave: int = 0, timeout: float | None = None,
        progress: Callable[[str], None] | None = None) -> Outcome:
    """Run `scenario` under `system` (built with `scenario=True`)."""
    resolved = resolve_all(scenario, system)
    if interleave == 0 and not needs_search(scenario, resolved, system):
        out = run_concrete(scenario, resolved, system)
        if out is not None:
            return out
    return run_bmc(scenario, resolved, system, interleave, timeout, progress)


__all__ = ["HOLDS", "NOT_REACHED", "STAR", "UNKNOWN", "VIOLATED", "Outcome", "Verdict", "run"]
