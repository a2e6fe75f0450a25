"""Regenerate the golden ITF traces from the golden scenarios (`tests/golden/*.calls`).

    python tests/golden/make.py            # write tests/golden/traces/ (and drop stale files)
    python tests/golden/make.py --check    # exit 1 if a trace is missing, stale or different

Each scenario runs on the concrete model under each profile its `profile:` header names,
with its `bounds:`, `set:` and `faults:` headers, exactly as `python -m search run` runs it.
Every call must resolve to exactly one enabled instance (no `*`, no choice left to an
engine), and every invariant is checked after every call. What the run gives must be what
the scenario's `expect:` line for that profile says; a profile without an `expect:` line
must hold (no invariant violated after any call):

- `holds`: a golden run. Its trace records no invariant.
- `inv@K, ...`: an expected violation, for a kernel whose every use of some action breaks
  an invariant (tests/test_golden.py lists them). Its trace records the first invariant of
  the line, which must still be violated in the final state (so that replay reproduces it).
- `impossible@K`: call K cannot happen under that profile; no trace is written.

The trace of scenario `S.calls` under profile `P` is `traces/S__P.itf.json`: the ITF form
(search.traces.itf) with every state recorded, so that loading it recomputes and compares them all.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from invariants import INVARIANTS  # noqa: E402
from model.actions import Instance  # noqa: E402
from model.bounds import Bounds  # noqa: E402
from model.logic import CONCRETE  # noqa: E402
from model.profiles import PROFILES, parse_flag_value  # noqa: E402
from model.system import System  # noqa: E402
from search.engines.scenarios import resolve_all, why_impossible  # noqa: E402
from search.traces.itf import Trace, dumps, trace_from_steps, write_atomic  # noqa: E402
from search.traces.scenario_file import Expect, Scenario, load  # noqa: E402

GOLDEN = Path(__file__).resolve().parent
TRACES = GOLDEN / "traces"
ENGINE = "golden"


class GoldenError(Exception):
    """A golden scenario that does not run as its file says: one line."""


@dataclass
class Run:
    """One golden scenario under one profile, run on the concrete model."""

    scenario: Scenario
    profile: str
    system: System
    steps: list[Instance] = field(default_factory=list)
    first: dict[str, int] = field(default_factory=dict)  # invariant -> first call it fails after
    impossible: tuple[int, str] | None = None  # (call, the kernel's reason)

    @property
    def stem(self) -> str:
        return Path(self.scenario.path).name.removesuffix(".calls")

    @property
    def expect(self) -> Expect | None:
        found = [e for e in self.scenario.expects if e.profile == self.profile]
        if len(found) > 1:
            raise GoldenError(f"{self.scenario.path}: two expect lines for {self.profile}")
        return found[0] if found else None

    @property
    def invariant(self) -> str | None:
        """What the trace records: the first invariant the expect line names, or None."""
        e = self.expect
        return e.violated[0][0] if e and e.violated else None


def scenario_files() -> list[Path]:
    return sorted(GOLDEN.glob("*.calls"))


def profiles_of(sc: Scenario) -> list[str]:
    names = list(sc.profiles) or ["all"]
    out: list[str] = []
    for n in names:
        for p in PROFILES if n == "all" else [n]:
            if p not in PROFILES:
                raise GoldenError(f"{sc.path}: unknown profile {p!r}")
            if p not in out:
                out.append(p)
    return out


def overrides_of(sc: Scenario) -> dict[str, object]:
    """The scenario's `set:` header as flag values."""
    out: dict[str, object] = {}
    for item in sc.sets:
        name, sep, value = item.partition("=")
        if not sep:
            raise GoldenError(f"{sc.path}: set: needs flag=value, got {item!r}")
        out[name.strip()] = parse_flag_value(name.strip(), value)
    return out


def system_for(sc: Scenario, profile: str) -> System:
    return System.build(profile, bounds=Bounds.parse(sc.bounds or "small"), faults=bool(sc.faults),
                        overrides=overrides_of(sc), scenario=True)


def execute(sc: Scenario, profile: str) -> Run:
    """Every call of `sc` under `profile`, each resolved to its one enabled instance, with
    every invariant checked after every call."""
    system = system_for(sc, profile)
    run = Run(sc, profile, system)
    s = system.initial()
    for name, inv in INVARIANTS.items():
        if not inv(s, system.ctx, CONCRETE):
            raise GoldenError(f"{sc.path}: {name} fails in the initial state under {profile}")
    objects: dict[str, object] = {}
    for k, r in enumerate(resolve_all(sc, system), start=1):
        fixed = {**r.fixed, **{p: objects[n] for p, n in r.named.items()}}
        cands = [i for i in r.candidates(system) if all(i.params[p] == v for p, v in fixed.items())]
        enabled = [i for i in cands if i.guard(s, system.ctx, CONCRETE)]
        if not enabled:
            run.impossible = (k, why_impossible(r, cands, s, system))
            return run
        if len(enabled) > 1:
            shown = ", ".join(map(str, enabled[:4]))
            raise GoldenError(f"{sc.path}:{r.call.line}: {r.call.text} leaves a choice under "
                              f"{profile} ({shown}): write the parameters out")
        inst = enabled[0]
        s = system.step(s, inst)
        run.steps.append(inst)
        if r.call.binds and r.action.returns:
            objects[r.call.binds] = inst.params[r.action.returns]
        for name, inv in INVARIANTS.items():
            if name not in run.first and not inv(s, system.ctx, CONCRETE):
                run.first[name] = k
    return run


def check_expectation(run: Run) -> None:
    """What the run gave is what the scenario's expect line for the profile says."""
    e = run.expect
    where = f"{run.scenario.path} under {run.profile}"
    want_imp = e.impossible if e else None
    got_imp = run.impossible[0] if run.impossible else None
    if want_imp != got_imp:
        why = f" ({run.impossible[1]})" if run.impossible else ""
        raise GoldenError(f"{where}: expected impossible@{want_imp}, got impossible@{got_imp}{why}")
    want = dict(e.violated) if e else {}
    if want != run.first:
        def show(d: dict[str, int]) -> str:
            return ", ".join(f"{n}@{k}" for n, k in sorted(d.items(), key=lambda x: (x[1], x[0]))) or "holds"
        raise GoldenError(f"{where}: expected {show(want)}, got {show(run.first)}")
    inv = run.invariant
    if inv is not None and run.impossible is None:
        s = run.system.initial()
        for inst in run.steps:
            s = run.system.step(s, inst)
        if INVARIANTS[inv](s, run.system.ctx, CONCRETE):
            raise GoldenError(f"{where}: {inv} holds again in the final state: end the scenario "
                              "while it is violated, so that replay reproduces it")


def trace_of(run: Run) -> Trace | None:
    if run.impossible is not None:
        return None
    first_comment = next((ln.lstrip("# ").strip() for ln in
                          Path(run.scenario.path).read_text(encoding="utf-8").splitlines()
                          if ln.startswith("#")), "")
    what = f"expected {run.invariant} violation" if run.invariant else "golden run"
    desc = f"{what}: {run.stem}.calls under {run.profile}: {first_comment}"[:1000]
    return trace_from_steps(run.system, run.steps, run.invariant, ENGINE, description=desc)


def trace_path(stem: str, profile: str) -> Path:
    return TRACES / f"{stem}__{profile}.itf.json"


def all_runs() -> list[Run]:
    runs = []
    for path in scenario_files():
        sc = load(str(path))
        for prof in profiles_of(sc):
            run = execute(sc, prof)
            check_expectation(run)
            runs.append(run)
    return runs


def expected_files() -> dict[Path, str]:
    """Every golden trace file and its text, regenerated from the scenarios."""
    out: dict[Path, str] = {}
    for run in all_runs():
        t = trace_of(run)
        if t is not None:
            out[trace_path(run.stem, run.profile)] = dumps(t)
    return out


def differences(want: dict[Path, str]) -> list[str]:
    """Missing, different and stale trace files: empty when tests/golden/traces is current."""
    out = []
    for p, text in want.items():
        if not p.exists():
            out.append(f"missing: {p.relative_to(ROOT)}")
        elif p.read_text(encoding="utf-8") != text:
            out.append(f"differs: {p.relative_to(ROOT)}")
    for p in sorted(TRACES.glob("*.itf.json")):
        if p not in want:
            out.append(f"stale: {p.relative_to(ROOT)}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a trace is missing, stale or different")
    a = ap.parse_args(argv)
    try:
        want = expected_files()
    except (GoldenError, ValueError) as e:
        print(f"make.py: {e}", file=sys.stderr)
        return 2
    diff = differences(want)
    if a.check:
        for line in diff:
            print(line)
        print(f"{len(want)} golden traces, {len(diff)} out of date")
        return 1 if diff else 0
    TRACES.mkdir(exist_ok=True)
    for p, text in want.items():
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            write_atomic(p, text.encode("utf-8"))
    for p in TRACES.glob("*.itf.json"):
        if p not in want:
            p.unlink()
    print(f"{len(want)} golden traces in {TRACES.relative_to(ROOT)} ({len(diff)} written or removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
