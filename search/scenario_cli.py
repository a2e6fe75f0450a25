"""`python -m search run FILE...`: check scenarios (`*.calls`, or ITF traces) under kernel
profiles and print, for each scenario, profile and invariant, the first call that breaks it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from invariants import INVARIANTS
from model.bounds import Bounds, BoundsError
from model.profiles import PROFILES, ProfileError
from model.state import BAD_REASONS, BAD_REF_ZERO
from model.system import System
from search.engines.scenarios import NOT_REACHED, UNKNOWN, VIOLATED, Outcome, run
from search.engines.symbolic import fresh_z3
from search.traces.scenario_file import Scenario, ScenarioError, _safe, load

EXIT_OK, EXIT_IMPOSSIBLE, EXIT_USAGE, EXIT_VIOLATED = 0, 1, 2, 12
MAX_INTERLEAVE = 8


class UsageError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    p = _Parser(prog="python -m search run",
                description="Run scenarios (*.calls files or ITF traces): every invariant is "
                            "checked after every call.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--profile", action="append", default=[], metavar="P",
                   help="a kernel profile, or 'all' (default: the file's 'profile:' line, else all)")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE",
                   help="override a flag of every profile (added to the file's 'set:')")
    p.add_argument("--bounds", default=None, metavar="K=V,...",
                   help="the scope (default: the file's 'bounds:', else the default scope)")
    p.add_argument("--faults", action="store_true", default=None,
                   help="page-table allocations may fail (default: the file's 'faults:')")
    p.add_argument("--interleave", type=int, default=None, metavar="K",
                   help="up to K steps of the modelled kernel between two calls (BMC)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per z3 query, when BMC answers")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="the tables only, no narration")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="save each violation's trace (ITF) there, witnesses of * and --interleave "
                        "included (python -m search show/replay take them)")
    return p


def _profiles(asked: Sequence[str], scenario: Scenario) -> list[str]:
    names = list(asked) or list(scenario.profiles) or ["all"]
    out: list[str] = []
    for n in names:
        for m in (PROFILES if n == "all" else [n]):
            if m not in PROFILES:
                raise UsageError(f"unknown profile {_safe(m)!r}; known: {', '.join(PROFILES)}")
            if m not in out:
                out.append(m)
    return out


def _overrides(items: Sequence[str]) -> dict[str, Any]:
    from search.cli import parse_overrides

    return parse_overrides(items)


def _settings(scenario: Scenario, a: argparse.Namespace) -> tuple[Bounds, bool, dict[str, Any], int]:
    try:
        bounds = Bounds.parse(a.bounds if a.bounds is not None else scenario.bounds or "small")
    except BoundsError as e:
        raise UsageError(f"{_safe(scenario.path)}: {e}") from None
    faults = a.faults if a.faults is not None else bool(scenario.faults)
    overrides = _overrides([*scenario.sets, *a.set])
    k = a.interleave if a.interleave is not None else (scenario.interleave or 0)
    if not 0 <= k <= MAX_INTERLEAVE:
        raise UsageError(f"--interleave {k}: an integer 0..{MAX_INTERLEAVE}")
    return bounds, faults, overrides, k


def _cell(o: Outcome, inv: str) -> str:
    v = o.verdicts[inv]
    if v.status == VIOLATED:
        return f"call {v.call}"
    if v.status == NOT_REACHED:
        return "-"
    if v.status == UNKNOWN:
        return "unknown"
    return "holds"


def _header(s: Scenario, bounds: Bounds, faults: bool, ov: dict[str, Any], k: int) -> str:
    b = ",".join(f"{n}={v}" for n, v in bounds.as_dict().items())
    sets = " ".join(f"{n}={v}" for n, v in ov.items()) or "none"
    inter = f"up to {k} kernel steps between calls" if k else "none"
    return (f"{s.path}: {len(s.calls)} calls; bounds {b}; page-table allocation failures "
            f"{'on' if faults else 'off'}; overrides {sets}; interleaving {inter}")


def kernel_reports(o: Outcome) -> list[str]:
    """What the kernel itself printed on the way ("BUG: Bad page state ..."), by call."""
    return [f"call {k} {o.scenario.calls[k - 1].text}: "
            f"{'kernel BUG' if r == BAD_REF_ZERO else 'BUG: Bad page state'}: {BAD_REASONS[r]} "
            f"(frame {f})" for k, f, r in o.reports]


def _trace(o: Outcome, inv: str) -> Any:
    from search.traces.itf import trace_from_steps

    v = o.verdicts[inv]
    return trace_from_steps(o.system, v.steps, inv, "scenario" if o.engine == "run" else "bmc",
                            description=f"{o.scenario.label}: {inv} at call {v.call}")


def _check_out(folder: str) -> None:
    p = Path(folder)
    if not p.is_dir():
        raise UsageError(f"--out {_safe(folder)}: no such folder")


def save_traces(outs: Sequence[Outcome], folder: str) -> list[str]:
    """Each violation's trace, saved atomically as ITF (search.traces.itf.save)."""
    from search.traces.itf import save

    return [str(save(_trace(o, v.invariant), folder)) for o in outs for v in o.violated]


def narrate(o: Outcome, inv: str) -> str:
    """A violation told as `show --slice` tells a trace: the calls it depends on."""
    from search.traces.graph import render_text

    v = o.verdicts[inv]
    text = render_text(_trace(o, inv), slice_only=True)
    if any(c == 0 for c in v.calls_at):
        marks = ", ".join(str(k) for k, c in enumerate(v.calls_at, start=1) if c == 0)
        text += f"  (steps {marks} are the modelled kernel's own, interleaved between calls)\n"
    return text


def outcome_json(o: Outcome) -> dict[str, Any]:
    return {
        "scenario": o.scenario.path,
        "profile": o.system.profile.name,
        "engine": o.engine,
        "bounds": o.system.bounds.as_dict(),
        "faults": o.system.faults,
        "overrides": dict(o.system.overrides),
        "interleave": o.interleave,
        "impossible": None if o.impossible is None else {"call": o.impossible[0], "reason": o.impossible[1]},
        "results": {inv: {"status": v.status, "call": v.call,
                          "steps": [str(i) for i in v.steps], "detail": v.detail}
                    for inv, v in o.verdicts.items()},
        "seconds": round(o.seconds, 3),
    }


def load_input(path: str) -> Scenario:
    """A `.calls` file, or an ITF trace (`*.json`): its calls, under its own configuration."""
    if not path.endswith(".json"):
        return load(path)
    from search.traces.itf import TraceError
    from search.traces.itf import load as load_trace
    from search.traces.scenario_file import from_steps, parse

    try:
        t = load_trace(path)
    except TraceError as e:
        raise ScenarioError(str(e)) from None
    text = from_steps(list(t.steps), path, t.profile, t.bounds.as_dict(), t.faults, t.overrides)
    return parse(text, path)


def trace_of(path: str) -> Any:
    """A trace from an ITF file, or from a `.calls` file run on the concrete model under
    its first profile (all its calls determined): the invariant it records is the first
    one the calls break, if any. ScenarioError when the scenario cannot run that way."""
    from search.traces.itf import load as load_trace
    from search.traces.itf import trace_from_steps

    if path.endswith(".json"):
        return load_trace(path)
    sc = load(path)
    prof = (sc.profiles or ("v6.0",))[0]
    if prof == "all":
        raise ScenarioError(f"{_safe(path)}: name one profile in 'profile:' to use it as a trace")
    bounds = Bounds.parse(sc.bounds or "small")
    system = System.build(prof, bounds=bounds, faults=bool(sc.faults),
                          overrides=_overrides(list(sc.sets)), scenario=True)
    from search.engines.scenarios import resolve_all, run_concrete

    out = run_concrete(sc, resolve_all(sc, system), system)
    if out is None:
        raise ScenarioError(f"{_safe(path)}: a call leaves a choice to the engine (* or a fault): "
                            "run it with python -m search run")
    if out.impossible:
        k, why = out.impossible
        raise ScenarioError(f"{_safe(path)}:{sc.calls[k - 1].line}: cannot happen under {prof}: {why}")
    first = min(out.violated, key=lambda v: v.call or 0, default=None)
    steps = first.steps if first else _all_steps(sc, system)
    return trace_from_steps(system, steps, first.invariant if first else None, "scenario",
                            description=f"{sc.label} under {prof}")


def _all_steps(sc: Scenario, system: System) -> list[Any]:
    from model.logic import CONCRETE
    from search.engines.scenarios import resolve_all

    s, objects, out = system.initial(), {}, []
    for r in resolve_all(sc, system):
        fixed = {**r.fixed, **{p: objects[n] for p, n in r.named.items()}}
        (inst,) = [i for i in r.candidates(system)
                   if all(i.params[p] == v for p, v in fixed.items()) and i.guard(s, system.ctx, CONCRETE)]
        s = system.step(s, inst)
        out.append(inst)
        if r.call.binds and r.action.returns:
            objects[r.call.binds] = inst.params[r.action.returns]
    return out


def cmd_run(argv: Sequence[str]) -> int:
    a = _parser().parse_args(argv)
    outcomes: list[Outcome] = []
    blocks: list[str] = []
    saved: list[str] = []
    if a.out is not None:
        _check_out(a.out)
    for path in a.files:
        scenario = load_input(path)
        bounds, faults, ov, k = _settings(scenario, a)
        outs = []
        for prof in _profiles(a.profile, scenario):
            fresh_z3()  # the profile's verdicts and traces as `--profile P` alone gives them
            try:
                system = System.build(prof, bounds=bounds, faults=faults, overrides=ov, scenario=True)
            except ProfileError as e:
                raise UsageError(str(e)) from None
            outs.append(run(scenario, system, k, a.timeout))
        if a.out is not None:
            saved += save_traces(outs, a.out)
        outcomes += outs
        if not a.json:
            blocks.append(_render(scenario, outs, bounds, faults, ov, k, a.quiet))
    if a.json:
        print(json.dumps({"outcomes": [outcome_json(o) for o in outcomes], "saved": saved}, indent=1))
    else:
        print("\n".join(blocks), end="")
        if saved:
            print(f"{len(saved)} trace(s) saved under {_safe(a.out)}")
    return exit_code(outcomes)


def exit_code(outcomes: Sequence[Outcome]) -> int:
    if any(o.violated for o in outcomes):
        return EXIT_VIOLATED
    by_file: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_file.setdefault(o.scenario.path, []).append(o)
    if any(all(o.impossible for o in outs) for outs in by_file.values()):
        return EXIT_IMPOSSIBLE
    return EXIT_OK


def _render(scenario: Scenario, outs: list[Outcome], bounds: Bounds, faults: bool,
            ov: dict[str, Any], k: int, quiet: bool) -> str:
    invs = list(INVARIANTS)
    width = max(len("profile"), *(len(o.system.profile.name) for o in outs)) + 2
    cols = [max(len(i), 8) + 2 for i in invs]
    lines = [_header(scenario, bounds, faults, ov, k),
             "profile".ljust(width) + "".join(i.ljust(w) for i, w in zip(invs, cols, strict=True))]
    for o in outs:
        lines.append(o.system.profile.name.ljust(width)
                     + "".join(_cell(o, i).ljust(w) for i, w in zip(invs, cols, strict=True)).rstrip())
    notes = []
    for o in outs:
        prof = o.system.profile.name
        if o.impossible:
            call = scenario.calls[o.impossible[0] - 1]
            notes.append(f"{prof}: call {o.impossible[0]} (line {call.line}) {call.text} cannot happen: "
                         f"{o.impossible[1]}")
        for v in o.verdicts.values():
            if v.status == UNKNOWN:
                notes.append(f"{prof}: {v.invariant} unknown: {v.detail}")
        notes += [f"{prof}: {r}" for r in kernel_reports(o)]
    lines += notes
    lines.append("'call K': the first call after which the invariant fails; 'holds': after every "
                 "call" + (" and every interleaving" if k else "") + ", within these bounds; "
                 "'-': not reached.")
    if not quiet:
        for o in outs:
            for v in o.violated:
                call = scenario.calls[v.call - 1] if v.call else None
                lines.append("")
                lines.append(f"--- {o.system.profile.name}: {v.invariant} broken by call {v.call}"
                             + (f" (line {call.line}) {call.text}" if call else ""))
                lines.append(narrate(o, v.invariant).rstrip())
    lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    """Stand-alone entry (search.cli dispatches `run` here)."""
    try:
        return cmd_run(argv)
    except (UsageError, ScenarioError) as e:
        print(f"allocheck run: {e}".replace("\n", " "), file=sys.stderr)
        return EXIT_USAGE

