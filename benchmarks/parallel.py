"""The whole check matrix on 1, 2 and every core: wall time and speed-up, printed, never
asserted.

    python benchmarks/parallel.py [--depth 6] [--workers 1,2,4] [--repeat 1] [--faults]
                                  [--profiles a,b] [--isolated] [--ceiling]

Each run is `python -m search --depth N --no-save --json --workers W` in a fresh process,
timed from outside (start-up included). The results of every run are compared with the
first's (statuses, depths, declared, detail), so a speed-up is never bought with a
different answer. The CPU time of each run (its processes and theirs) is printed with the
wall time: cpu/wall is the parallelism the run got. The load average is printed before and
after: on a shared machine other work takes cores from the runs, and the wall times and
speed-ups only mean what they say on an idle one. `--repeat K` runs the counts in turn K
times and keeps each count's fastest run (the one least disturbed).

The machine's own ceiling is printed last: the same fixed piece of pure-Python work run
once alone, then as W copies at once, each in its own process (nothing shared, nothing
to wait for). W x alone / together is the most any W-process program gets here; on a
virtual machine whose cores the host shares it is below W, and the matrix's speed-up is
to be read against it. Each profile's own check time is printed for every run (and, with
`--isolated`, for each profile checked alone in a fresh process): whether the checks got
slower side by side, or the run lost time elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def cores() -> int:
    from search.distribute import default_workers

    return default_workers()


def _cpu() -> float:
    """CPU seconds of every finished child and its children (the tasks' processes)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(depth: int, workers: int, extra: list[str]
        ) -> tuple[float, float, int, list[dict[str, Any]], dict[str, float]]:
    """Wall and CPU seconds, exit code, the results but their times, and each profile's
    time (its last result's `seconds`: from the start of its check to the last verdict)."""
    cmd = [sys.executable, "-m", "search", "--depth", str(depth), "--no-save", "--json",
           "--workers", str(workers), *extra]
    c, t = _cpu(), time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    secs, cpu = time.monotonic() - t, _cpu() - c
    if not p.stdout.strip():
        sys.exit(f"{' '.join(cmd)}: exit {p.returncode}, no results: {p.stderr.strip()[-500:]}")
    rows = json.loads(p.stdout)["results"]
    per_profile: dict[str, float] = {}
    for r in rows:
        per_profile[r["profile"]] = max(per_profile.get(r["profile"], 0.0), r["seconds"])
    results = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    return secs, cpu, p.returncode, results, per_profile


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


_SPIN = "x = 0\nfor i in range(20_000_000):\n    x += i * i % 7\n"


def ceiling(workers: int, repeat: int = 3) -> tuple[float, float, float]:
    """(alone, together, speed-up): the wall seconds of one copy of a fixed CPU-bound loop,
    of `workers` copies started at once (the slowest), and workers x alone / together.
    Each is the fastest of `repeat` tries."""
    def wall(n: int) -> float:
        t = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(n)]
        for p in procs:
            p.wait()
        return time.monotonic() - t

    alone = min(wall(1) for _ in range(repeat))
    together = min(wall(workers) for _ in range(repeat))
    return alone, together, workers * alone / together


def isolated(depth: int, profiles: list[str], extra: list[str]) -> dict[str, float]:
    """Each profile's check time with `python -m search --profile P` run alone, one profile
    after the other: the work a worker's fresh process does, without a neighbour."""
    flags = [x for x in extra if x == "--faults"]
    out: dict[str, float] = {}
    for name in profiles:
        out.update(run(depth, 1, [*flags, "--profile", name])[4])
    return out


def print_profiles(columns: dict[str, dict[str, float]]) -> None:
    """Each profile's check time (start of its check to its last verdict) per run: a check
    slower with W workers than isolated was slowed by its neighbour on the other core; one
    slower isolated than in the serial run by its fresh process (z3's search depends on
    what the process asked before)."""
    names = list(next(iter(columns.values())))
    print(f"each profile's check, seconds: {'profile':<14}"
          + "".join(f"{c:>12}" for c in columns))
    for name in names:
        print(f"{'':30}{name:<14}" + "".join(f"{col.get(name, float('nan')):>12.1f}"
                                             for col in columns.values()))
    print(f"{'':30}{'sum':<14}" + "".join(f"{sum(col.values()):>12.1f}"
                                          for col in columns.values()), flush=True)


def print_ceiling(counts: list[int], repeat: int = 3) -> None:
    print("this machine's ceiling (a fixed pure-Python loop, alone and as W copies at once, "
          f"fastest of {repeat}):")
    for w in counts:
        if w > 1:
            alone, together, up = ceiling(w, repeat)
            print(f"{w:>8} {alone:>8.2f}s alone, {together:.2f}s together: {up:.2f}x at most",
                  flush=True)


def projected(per_profile: dict[str, float], workers: int, depth: int,
              extra: list[str]) -> float:
    """The wall time of the checks alone if `workers` ran them in the order
    search/distribute.py starts them (largest first), each taking as long as it did on the
    1-worker run: what an idle machine would give if the tasks did not slow each other."""
    from invariants import INVARIANTS
    from model.bounds import DEFAULT_BOUNDS
    from search.distribute import largest_first, plan

    tasks = plan(list(per_profile), list(INVARIANTS), depth, "bmc", {},
                 DEFAULT_BOUNDS.as_dict(), "--faults" in extra, False, None)
    free = [0.0] * workers
    for t in largest_first(tasks):
        i = free.index(min(free))
        free[i] += per_profile[t.profile]
    return max(free)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--workers", default="", help="comma-separated (default: 1, 2, every core)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per count; the fastest is kept")
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--profiles", default="", help="comma-separated (default: all)")
    ap.add_argument("--isolated", action="store_true",
                    help="also check each profile alone in a fresh process, one after another")
    ap.add_argument("--ceiling", action="store_true",
                    help="print only this machine's ceiling (no checks)")
    a = ap.parse_args()
    n = cores()
    counts = ([int(w) for w in a.workers.split(",")] if a.workers
              else list(dict.fromkeys([1, 2, n])))
    if a.ceiling:
        print_ceiling(counts)
        return
    extra = (["--faults"] if a.faults else []) + [
        arg for p in filter(None, a.profiles.split(",")) for arg in ("--profile", p)]
    load = _load()
    print(f"python -m search --depth {a.depth}{' ' + ' '.join(extra) if extra else ''}: "
          f"{n} cores here; load average {load:.2f} before")
    first: list[dict[str, Any]] | None = None
    best: dict[int, tuple[float, float, int, int]] = {}  # workers -> secs, cpu, exit, results
    differs: set[int] = set()
    times: dict[int, dict[str, float]] = {}  # workers -> per profile, from the fastest run
    for k in range(max(1, a.repeat)):
        for w in counts:
            secs, cpu, code, results, per_profile = run(a.depth, w, extra)
            first = results if first is None else first
            if results != first:
                differs.add(w)
            if w not in best or secs < best[w][0]:
                best[w] = (secs, cpu, code, len(results))
                times[w] = per_profile
            if a.repeat > 1:
                print(f"  run {k + 1}: {w} workers {secs:.1f}s (cpu {cpu:.1f}s)", flush=True)
    print(f"{'workers':>8} {'wall':>9} {'speed-up':>9} {'cpu':>9} {'cpu/wall':>9} {'exit':>5} "
          f"{'results':>8}  same as 1st")
    base = best[counts[0]][0]
    for w in counts:
        secs, cpu, code, got = best[w]
        print(f"{w:>8} {secs:>8.1f}s {base / secs:>8.2f}x {cpu:>8.1f}s {cpu / secs:>9.2f} "
              f"{code:>5} {got:>8}  {'NO: the results differ' if w in differs else 'yes'}")
    if counts[0] == 1 and times.get(1):
        alone = sum(times[1].values())
        print(f"projected from the 1-worker run's profile times ({alone:.1f}s of checks; an "
              "upper bound: tasks running at once may slow each other):")
        for w in counts[1:]:
            t = projected(times[1], w, a.depth, extra)
            print(f"{w:>8} {t:>8.1f}s {alone / t:>8.2f}x")
    columns = {f"{w} workers": times[w] for w in counts if w in times}
    if a.isolated:
        columns["isolated"] = isolated(a.depth, list(times[counts[0]]), extra)
    print_profiles(columns)
    load = _load()
    print(f"load average {load:.2f} after")
    print_ceiling(counts)


if __name__ == "__main__":
    main()
