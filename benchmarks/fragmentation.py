"""Issue 10's figure: `python -m search fragmentation --load 8 --plot FILE` must finish in
under 2 minutes on this 2-core machine. Prints wall and CPU time of the command (a fresh
process, start-up included) for BPF programs, module text and BPF trampolines; never
asserts.

    python benchmarks/fragmentation.py [--load 8] [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "search", *argv], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.returncode


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument("--load", type=int, default=8)
    a.add_argument("--runs", type=int, default=200)
    args = a.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("bpf", "modules", "trampolines"):
            png = Path(tmp) / f"{kind}.png"
            wall, cpu, code = timed(["fragmentation", "--kind", kind, "--load", str(args.load),
                                     "--runs", str(args.runs), "--plot", str(png)])
            print(f"fragmentation --kind {kind} --load {args.load} --plot: {wall:.1f} s wall, "
                  f"{cpu:.1f} s CPU, exit {code}, plot {png.stat().st_size if png.exists() else 0} "
                  "bytes (goal: under 120 s)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
