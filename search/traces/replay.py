"""Replaying a trace: re-execute its steps under its own or another kernel and say why it
no longer reproduces, down to the guard conjunct that became false."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invariants import INVARIANTS
from model.actions import Instance
from model.actions.reasons import REASONS
from model.profiles import FLAG_INFO, PROFILES
from model.state import State, leaves, rebuild
from model.system import System
from search.traces.itf import Trace, _concrete, lookup
from search.traces.naming import Change, format_call, format_changes, state_diff, value_label


@dataclass(frozen=True)
class ReplayReport:
    """What re-executing a trace showed. Steps are numbered from 1; `diverged_at` is the
    first step that was disabled, missing, or led away from the recorded run (None when
    the trace reproduced)."""

    reproduced: bool
    diverged_at: int | None
    reason: str  # one paragraph: what happened and why
    narration: tuple[str, ...]  # one line per step taken
    profile: str
    overrides: dict[str, Any]
    recorded_config: bool  # same effective flags as recorded: recorded states were checked
    # every invariant met violated on the way, with the first step it failed after
    violations: tuple[tuple[str, int], ...] = ()


def replay(trace: Trace, profile: str | None = None,
           overrides: dict[str, Any] | None = None) -> ReplayReport:
    """Re-execute the trace's steps from the initial state.

    With no `profile`, under the recorded profile, the recorded overrides updated by
    `overrides`; with a `profile`, under that profile and `overrides` only (a different
    kernel does not inherit the old one's overrides). Raises ProfileError for an unknown
    profile or flag."""
    prof = profile or trace.profile
    ov = dict(trace.overrides) if profile is None else {}
    ov.update(overrides or {})
    system = System.build(prof, bounds=trace.bounds, faults=trace.faults, overrides=ov, scenario=True)
    return _Replayer(trace, system).run()


class _Replayer:
    def __init__(self, trace: Trace, system: System) -> None:
        self.t = trace
        self.sys = system
        self.same = system.flags.as_dict() == trace.flags
        self.inv = INVARIANTS[trace.invariant] if trace.invariant else None
        self.lines: list[str] = []
        self.departed: tuple[int, list[Change]] | None = None
        self.first_violation: dict[str, int] = {}

    def report(self, ok: bool, at: int | None, reason: str) -> ReplayReport:
        seen = tuple(self.first_violation.items())
        if seen:
            met = "; ".join(f"{name} after step {k}" for name, k in seen)
            reason += f" Invariants violated on the way (first step): {met}."
        return ReplayReport(ok, at, reason, tuple(self.lines), self.sys.profile.name,
                            dict(self.sys.overrides), self.same, seen)

    def check_all(self, s: State, k: int) -> None:
        """Every invariant after every step: the first step each one fails after."""
        for name, inv in INVARIANTS.items():
            if name not in self.first_violation and not inv(s, self.sys.ctx, _concrete()):
                self.first_violation[name] = k

    def where(self) -> str:
        ov = ", ".join(f"{k}={value_label('', v)}" for k, v in self.sys.overrides.items())
        return self.sys.profile.name + (f" with {ov}" if ov else "")

    def violated(self, s: State) -> bool:
        return self.inv is not None and not self.inv(s, self.sys.ctx, _concrete())

    def run(self) -> ReplayReport:
        t, inv_name = self.t, self.t.invariant
        s = self.sys.initial()
        if self.same and s != t.states[0]:
            return self.report(False, 0, "the recorded initial state is not the model's")
        if self.violated(s):
            return self.report(False, 0, f"{inv_name} is violated already in the initial state")
        prev_off: list[Change] = []
        for k, (name, params) in enumerate(t.steps, start=1):
            call = format_call(name, params)
            found = lookup(self.sys, name, params)
            if isinstance(found, str):
                self.lines.append(f"step {k}: {call}: does not exist here")
                return self.report(False, k, f"step {k} {call} cannot be taken under "
                                   f"{self.where()}: {found}.{self.since()}")
            if not found.guard(s, self.sys.ctx, _concrete()):
                why = explain_guard(found, s, self.sys, t.states[k - 1])
                self.lines.append(f"step {k}: {call}: disabled")
                return self.report(False, k, f"step {k} {call} is disabled under "
                                   f"{self.where()}: {why}{self.since()}")
            nxt = self.sys.step(s, found)
            own = format_changes(state_diff(s, nxt), limit=4)
            line = f"step {k}: {call}: " + ("; ".join(own) if own else "no change")
            off = state_diff(t.states[k], nxt)
            fresh = [c for c in off if c not in prev_off]  # new departures only
            prev_off = off
            if fresh:
                line += " | departs from the recording: " + "; ".join(
                    format_changes(fresh, "now {new}, recorded {old}", limit=3))
            if off:
                if self.same:
                    self.lines.append(line)
                    return self.report(False, k, f"step {k} {call} does not produce the "
                                       "recorded state under the recorded flags (the model "
                                       "changed since the trace was recorded): "
                                       + "; ".join(format_changes(off, "now {new}, recorded {old}",
                                                                  limit=3)))
                if self.departed is None:
                    self.departed = (k, off)
            s = nxt
            self.check_all(s, k)
            if self.violated(s) and self.first_violation.get(inv_name or "") == k:
                line += f" | {inv_name} violated"
            self.lines.append(line)
        n = t.depth
        if self.inv is None:
            return self.report(True, None, f"all {n} steps ran under {self.where()}.")
        if self.violated(s):
            first = self.first_violation[inv_name or ""]
            when = "and not before" if first == n else f"(and already after step {first})"
            return self.report(True, None, f"{inv_name} is violated after step {n} {when}, "
                               f"under {self.where()}.")
        at = self.departed[0] if self.departed else n
        tail = self.decisive(t.states[n], s)
        return self.report(False, at, f"every step ran, but {inv_name} holds after the last "
                           f"step {n} under {self.where()}.{self.since()}{tail}")

    def decisive(self, recorded: State, now: State) -> str:
        """The differences at the end that each, put alone into the recorded final state,
        make the invariant hold there: the concrete reason the violation is gone."""
        end = state_diff(recorded, now)
        if not end:
            return ""
        paths = [p for p, _ in leaves(recorded)]
        base = [v for _, v in leaves(recorded)]
        found = []
        for ch in end:
            vals = list(base)
            vals[paths.index(ch.path)] = ch.new
            if not self.violated(rebuild(recorded, vals)):
                found.append(ch)
        if found:
            return (" What alone removes the violation from the recorded final state: "
                    + "; ".join(format_changes(found, "now {new}, recorded {old}", limit=4)) + ".")
        return (" At the end the state differs from the recorded violation in: "
                + "; ".join(format_changes(end, "now {new}, recorded {old}", limit=4)) + ".")

    def since(self) -> str:
        """Where this run first left the recorded one (the usual reason a fix works), and
        the kernel changes between the two configurations."""
        out = ""
        if self.departed is not None:
            k, off = self.departed
            name, params = self.t.steps[k - 1]
            out = (f" The run left the recorded one at step {k} {format_call(name, params)}: "
                   + "; ".join(format_changes(off, "now {new}, recorded {old}", limit=6)) + ".")
        return out + self.kernel_changes()

    def kernel_changes(self) -> str:
        """The flags this kernel sets otherwise than the recording's, each with the kernel
        change it stands for, and the fix the recording's profile names."""
        if self.same:
            return ""
        now = self.sys.flags.as_dict()
        diffs = [(k, self.t.flags.get(k), v) for k, v in now.items() if self.t.flags.get(k) != v]
        out = ""
        if diffs:
            out = " What changed in the kernel: " + "; ".join(
                f"{k} {value_label('', old)} -> {value_label('', new)} ({FLAG_INFO[k].doc})"
                for k, old, new in diffs[:6]) + ("; ..." if len(diffs) > 6 else "") + "."
        rec = PROFILES.get(self.t.profile)
        fix = rec.fixed_by.get(self.t.invariant or "") if rec is not None else None
        if fix:
            out += f" {self.t.profile} names the fix: {fix}."
        return out


def explain_guard(inst: Instance, s: State, system: System, recorded: State | None = None) -> str:
    """Why `inst`'s guard is false in `s`, in kernel terms first: the sentence of the first
    false top-level conjunct of `pre`, or else of the guard proper (model.actions.reasons,
    or a scenario call's own checks), then that conjunct's source text, and how the state
    differs from the recorded one, if given."""
    act, p = inst.action, inst.params
    out = "its guard is false"
    if act.checks:
        why = act.why_not(s, p, system.ctx, _concrete())
        if why is not None:
            k, fn = next((k, g) for k, (sentence, g) in enumerate(act.checks)
                         if not g(s, p, system.ctx, _concrete()))
            parts = guard_conjuncts(fn)
            out = why + (f" (check {k + 1} of {len(act.checks)}: `{parts[0][0]}`)" if parts else "")
    else:
        out = _explain_builtin(act, p, s, system)
    if recorded is not None:
        off = state_diff(recorded, s)
        if off:
            out += ("; the state before it differs from the recording in: "
                    + "; ".join(format_changes(off, "now {new}, recorded {old}", limit=4)))
        else:
            out += "; the state is as recorded, so the flags changed the guard itself"
    return out + "."


def _explain_builtin(act: Any, p: dict[str, Any], s: State, system: System) -> str:
    part, fn = "guard", act.guard
    if act.pre is not None and not act.pre(s, p, system.ctx, _concrete()):
        part, fn = "pre", act.pre
    rec = _AndRecorder()
    fn(s, p, system.ctx, rec)
    parts = guard_conjuncts(fn)
    if parts is None:
        return "its guard is false"
    texts, is_and = parts
    k: int | None = 0
    if is_and:
        k = None
        if rec.calls and len(rec.calls[-1]) == len(texts):
            vals = rec.calls[-1]
            k = vals.index(False) if False in vals else None
    if k is None:
        return "its guard is false"
    sentences = REASONS.get(act.name, {}).get(part, ())
    where = f"guard conjunct {k + 1} of {len(texts)}: `{texts[k]}`" if is_and else f"its guard `{texts[0]}`"
    if k < len(sentences):
        return f"{sentences[k].format(**p)} ({where})"
    return f"{where} is false"


class _AndRecorder:
    """Concrete logic that remembers the truth of each `and_`'s arguments; the guard's
    top-level `L.and_(...)` is the last one called, since Python evaluates arguments first."""

    def __init__(self) -> None:
        self.calls: list[list[bool]] = []
        self._c = _concrete()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)

    def and_(self, *xs: Any) -> bool:
        vals = [bool(x) for x in xs]
        self.calls.append(vals)
        return all(vals)


_SOURCE_CACHE: dict[str, Any] = {}


def guard_conjuncts(fn: Any) -> tuple[list[str], bool] | None:
    """The source text of a guard's top-level conjuncts, read from the model's own source
    with `ast` (our code, not the trace's); (texts, True) for `L.and_(...)`, ([expr], False)
    for anything else, None when the source cannot be found."""
    import ast
    import inspect

    try:
        code = fn.__code__
        path = inspect.getsourcefile(fn)
        if path is None:
            return None
        if path not in _SOURCE_CACHE:
            src = Path(path).read_text(encoding="utf-8")
            _SOURCE_CACHE[path] = (src, ast.parse(src))
        src, tree = _SOURCE_CACHE[path]
    except (AttributeError, OSError, TypeError, SyntaxError):
        return None
    expr = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno:
            expr = node.body
            break
        if isinstance(node, ast.FunctionDef) and node.name == code.co_name:
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            if first == code.co_firstlineno:
                rets = [st for st in node.body if isinstance(st, ast.Return)]
                expr = rets[-1].value if rets else None
                break
    if expr is None:
        return None

    def text(n: ast.AST) -> str:
        return " ".join((ast.get_source_segment(src, n) or ast.unparse(n)).split())

    if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "and_"
            and not any(isinstance(a, ast.Starred) for a in expr.args)):
        return [text(a) for a in expr.args], True
    return [text(expr)], False
