"""The whole check matrix on 1, 2 and every core: wall time and speed-up, printed, never
asserted.

    python benchmarks/parallel.py [--depth 6] [--workers 1,2,4] [--repeat 1] [--faults]
                                  [--profiles a,b]

Each run is `python -m search --depth N --no-save --json --workers W` in a fresh process,
timed from outside (start-up included). The results of every run are compared with the
first's (statuses, depths, declared, detail), so a speed-up is never bought with a
different answer. The CPU time of each run (its processes and theirs) is printed with the
wall time: cpu/wall is the parallelism the run got. The load average is printed before and
after: on a shared machine other work takes cores from the runs, and the wall times and
speed-ups only mean what they say on an idle one. `--repeat K` runs the counts in turn K
times and keeps each count's fastest run (the one least disturbed).
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
    a = ap.parse_args()
    n = cores()
    counts = ([int(w) for w in a.workers.split(",")] if a.workers
              else list(dict.fromkeys([1, 2, n])))
    extra = (["--faults"] if a.faults else []) + [
        arg for p in filter(None, a.profiles.split(",")) for arg in ("--profile", p)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python -m search --depth {a.depth}{' ' + ' '.join(extra) if extra else ''}: "
          f"{n} cores here; load average {load:.2f} before")
    first: list[dict[str, Any]] | None = None
    best: dict[int, tuple[float, float, int, int]] = {}  # workers -> secs, cpu, exit, results
    differs: set[int] = set()
    times: dict[str, float] = {}  # per profile, from the fastest first-count run
    for k in range(max(1, a.repeat)):
        for w in counts:
            secs, cpu, code, results, per_profile = run(a.depth, w, extra)
            first = results if first is None else first
            if results != first:
                differs.add(w)
            if w not in best or secs < best[w][0]:
                best[w] = (secs, cpu, code, len(results))
                if w == counts[0]:
                    times = per_profile
            if a.repeat > 1:
                print(f"  run {k + 1}: {w} workers {secs:.1f}s (cpu {cpu:.1f}s)", flush=True)
    print(f"{'workers':>8} {'wall':>9} {'speed-up':>9} {'cpu':>9} {'cpu/wall':>9} {'exit':>5} "
          f"{'results':>8}  same as 1st")
    base = best[counts[0]][0]
    for w in counts:
        secs, cpu, code, got = best[w]
        print(f"{w:>8} {secs:>8.1f}s {base / secs:>8.2f}x {cpu:>8.1f}s {cpu / secs:>9.2f} "
              f"{code:>5} {got:>8}  {'NO: the results differ' if w in differs else 'yes'}")
    if counts[0] == 1 and times:
        alone = sum(times.values())
        print(f"projected from the 1-worker run's profile times ({alone:.1f}s of checks; an "
              "upper bound: tasks running at once may slow each other):")
        for w in counts[1:]:
            t = projected(times, w, a.depth, extra)
            print(f"{w:>8} {t:>8.1f}s {alone / t:>8.2f}x")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} after")


if __name__ == "__main__":
    main()
