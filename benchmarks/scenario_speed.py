"""How long scenarios take: the library under every profile (target: under 10 s), and a
10-call scenario at the default bounds with --interleave 2 (target: under 2 minutes).

    python benchmarks/scenario_speed.py [--profile P] [--interleave K]
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

from model.bounds import Bounds
from model.profiles import PROFILES
from model.system import System
from search.engines.scenarios import run
from search.traces.scenario_file import load, parse

ROOT = Path(__file__).resolve().parent.parent

# a module loaded and unloaded around a driver's buffer: ten calls at the default bounds
TEN_CALLS = """
m = module_alloc(npages=2)
memset(m)
memcpy(m)
set_vm_flush_reset_perms(m)
set_memory_ro(m, numpages=1)
set_memory_x(m, numpages=1)
b = vmalloc(npages=1)
p = vmalloc_to_page(b, index=0)
get_page(p)
module_memfree(m)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="v5.19")
    ap.add_argument("--interleave", type=int, default=2)
    a = ap.parse_args()

    files = sorted(glob.glob(str(ROOT / "scenarios" / "*.calls")))
    t0 = time.perf_counter()
    n = 0
    for f in files:
        sc = load(f)
        for prof in PROFILES:
            run(sc, System.build(prof, bounds=Bounds.parse(sc.bounds or "small"),
                                 faults=bool(sc.faults), scenario=True))
            n += 1
    lib = time.perf_counter() - t0
    print(f"library: {len(files)} scenarios x {len(PROFILES)} profiles = {n} runs in {lib:.2f} s "
          f"({'meets' if lib < 10 else 'MISSES'} the 10 s target)")

    sc = parse(TEN_CALLS, "ten-calls")
    t0 = time.perf_counter()
    out = run(sc, System.build(a.profile, scenario=True), interleave=a.interleave)
    t = time.perf_counter() - t0
    bad = [v.invariant for v in out.violated]
    print(f"10 calls, --interleave {a.interleave}, {a.profile}, default bounds: {t:.1f} s, engine "
          f"{out.engine}, violated: {', '.join(bad) or 'none'} "
          f"({'meets' if t < 120 else 'MISSES'} the 2 min target)")


if __name__ == "__main__":
    main()
