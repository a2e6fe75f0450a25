"""How long the engines take, printed, never asserted.

    python benchmarks/search_scaling.py [--depth 10] [--timeout 60] [--profiles a,b]
                                        [--scaling 1,5,10,15,20] [--no-bfs]

Part 1: every profile x invariant at `--depth`: BMC's time to the shortest counterexample
(or to exhaust the depth), and the explicit-state BFS side by side if search/engines/bfs.py is
there. Part 2: BMC on v5.19, all invariants, against depth, in one run: the time at which
each depth was done. `--timeout` bounds each engine run (one configuration), so an unknown
shows up as such instead of a hang. `--profiles ''` skips part 1: the issue's figure is

    python benchmarks/search_scaling.py --profiles '' --bounds wide --scaling 1,2,...,10
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from typing import Any

from invariants import INVARIANTS
from model.bounds import DEFAULT_BOUNDS, Bounds
from model.profiles import PROFILES
from model.system import System
from search.engines import bmc
from search.result import Result

Engine = Callable[..., dict[str, Result]]


def _bfs() -> Engine | None:
    if importlib.util.find_spec("search.engines.bfs") is None:
        return None
    from search.engines import bfs

    return getattr(bfs, "check", None)


def _cell(r: Result | None) -> str:
    if r is None:
        return "-"
    tag = {"violated": "V", "holds": "ok", "unknown": "?", "proved": "P"}.get(r.status, r.status)
    return f"{tag}@{r.depth} {r.seconds:6.2f}s"


def _run(engine: Engine, system: System, depth: int, timeout: float | None) -> tuple[
        dict[str, Result], float]:
    t = time.monotonic()
    try:
        res = engine(system, list(INVARIANTS), depth, timeout=timeout)
    except TypeError:
        res = engine(system, list(INVARIANTS), depth)  # an engine without a timeout
    return res, time.monotonic() - t


def matrix(profiles: list[str], depth: int, timeout: float | None, use_bfs: bool,
           bounds: Bounds = DEFAULT_BOUNDS) -> None:
    bfs = _bfs() if use_bfs else None
    engines: list[tuple[str, Engine]] = [("bmc", bmc.check)]
    if bfs is not None:
        engines.append(("bfs", bfs))
    print(f"== every profile x invariant, depth {depth} "
          f"(V@d: shortest violation at depth d; ok@d: none within d; ?: unknown)")
    grand = {name: 0.0 for name, _ in engines}
    for prof in profiles:
        system = System.build(prof, bounds=bounds)
        runs: dict[str, tuple[dict[str, Result], float]] = {}
        for name, engine in engines:
            runs[name] = _run(engine, system, depth, timeout)
            grand[name] += runs[name][1]
        totals = "  ".join(f"{n} {runs[n][1]:.1f}s" for n, _ in engines)
        print(f"{prof}  ({len(system.instances)} instances)  total: {totals}")
        for inv in INVARIANTS:
            cells = "   ".join(f"{n}: {_cell(runs[n][0].get(inv)):18s}" for n, _ in engines)
            print(f"  {inv:22s} expected {system.expected(inv) or '-':9s} {cells}")
    print("all profiles: " + "  ".join(f"{n} {t:.1f}s" for n, t in grand.items()))


def scaling(profile: str, depths: list[int], timeout: float | None,
            bounds: Bounds = DEFAULT_BOUNDS) -> None:
    """One BMC run to the largest depth, with the wall and CPU time at which each depth
    was done (CPU: the machine is shared, and z3 runs in this process)."""
    print(f"== bmc on {profile}, all invariants, against depth (cumulative; CPU in brackets)")
    system = System.build(profile, bounds=bounds)
    t0, c0 = time.monotonic(), time.process_time()
    done = [-1]
    wanted = set(depths)

    def tick(d: int, _name: str) -> None:
        # depth d starts: every depth before it is done
        while done[0] < d - 1:
            done[0] += 1
            if done[0] in wanted:
                print(f"  depth {done[0]:3d}: {time.monotonic() - t0:8.1f}s "
                      f"({time.process_time() - c0:8.1f}s CPU)", flush=True)

    res = bmc.check(system, list(INVARIANTS), max(depths), timeout=timeout, progress=tick)
    statuses: dict[str, Any] = {}
    for r in res.values():
        statuses[r.status] = statuses.get(r.status, 0) + 1
    print(f"  to depth {max(depths)}: {time.monotonic() - t0:8.1f}s "
          f"({time.process_time() - c0:8.1f}s CPU)  {statuses}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per engine run")
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--scaling", default="1,5,10,15,20")
    ap.add_argument("--scaling-profile", default="v5.19")
    ap.add_argument("--no-bfs", action="store_true")
    ap.add_argument("--bounds", default="", help="model scope, as python -m search --bounds")
    a = ap.parse_args()
    bounds = Bounds.parse(a.bounds) if a.bounds else DEFAULT_BOUNDS
    print(f"bounds: {bounds.as_dict()}")
    if a.profiles:
        matrix(a.profiles.split(","), a.depth, a.timeout, not a.no_bfs, bounds)
    scaling(a.scaling_profile, [int(x) for x in a.scaling.split(",") if x], a.timeout, bounds)


if __name__ == "__main__":
    main()
