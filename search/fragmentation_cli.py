"""`python -m search fragmentation`: what each allocator design for BPF programs or module
text costs the direct map, for a workload: the worst case over every placement (exact) and the typical
case (a seeded simulation), as a table, JSON and a plot (issue 10)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from model.placement import (
    Machine,
    Workload,
    as_json,
    design,
    events,
    module_design,
    trampoline_design,
    vmalloc_rebuilds,
)
from model.profiles import get_profile
from search.cli import UsageError, _Parser, _whole
from search.engines.fragmentation import simulate_levels, summary, worst_case
from search.progress import Progress

# one profile per design: per-program module_alloc, 4 KiB packs, PMD-mapped 2 MiB packs,
# PMD_SIZE * nodes packs on 4 KiB pages; for module text: module_alloc / execmem_alloc, the
# ROX cache out of the direct map (6.13-rc1), the ROX cache written through temp RW without
# collapse rebuilds on free (6.15) and with them (6.17); for BPF trampolines: a page each
# made executable only (5.5 to 6.0), a page each made RO (6.1), pack chunks (6.8)
REPRESENTATIVES = {"bpf": ("v5.2", "v5.18", "v5.18-rc1", "v6.0"),
                   "modules": ("v6.10", "v6.13-rc1", "v6.15", "v6.17"),
                   "trampolines": ("v5.19", "v6.1", "v6.8")}
DESIGNS = {"bpf": design, "modules": module_design, "trampolines": trampoline_design}
WHAT = {"bpf": "programs", "modules": "modules", "trampolines": "trampolines"}


def _count(lo: int, hi: int, what: str) -> Any:
    return lambda text: _whole(text, what, lo, hi)


def parser() -> _Parser:
    p = _Parser(
        prog="python -m search fragmentation",
        description="Direct-map leaves (2 MiB) split into 4 KiB pages, and 1 GiB pages split "
        "into 2 MiB ones, by each allocator design for BPF programs (or module text, or BPF "
        "trampolines) under a workload: the worst case over every placement the page "
        "allocator could choose (exact: an adversary's placement that meets the upper bound, "
        "else z3 Optimize), and the typical case over seeded random placements (median, "
        "90th percentile). Leaves split, not throughput. Exit 0, 3 if a worst case is "
        "unknown, 2 bad input, 130 interrupted.")
    p.add_argument("--kind", choices=tuple(REPRESENTATIVES), default="bpf",
                   help="what is loaded: BPF programs (default), modules' text, or BPF "
                   "trampolines")
    p.add_argument("--profile", action="append", metavar="P",
                   help="profile whose design to measure (repeatable; default: "
                   + "; ".join(f"{k}: {', '.join(v)}" for k, v in REPRESENTATIVES.items()) + ")")
    p.add_argument("--load", type=_count(0, 10_000, "--load"), default=8, metavar="N",
                   help="programs (or modules) loaded (default 8)")
    p.add_argument("--churn", type=_count(0, 10_000, "--churn"), default=0, metavar="M",
                   help="then M times: unload the oldest, load a new one (default 0)")
    p.add_argument("--prog-size", type=_count(1, 1 << 20, "--prog-size"), default=512,
                   metavar="BYTES", help="JIT image size of every program or trampoline "
                   "(default 512)")
    p.add_argument("--module-pages", type=_count(1, 512, "--module-pages"), default=4,
                   metavar="PAGES", help="4 KiB text pages of every module (default 4)")
    p.add_argument("--leaves", type=_count(1, 4096, "--leaves"), default=1024, metavar="L",
                   help="direct-map leaves of the modelled memory (default 1024: 2 GiB)")
    p.add_argument("--no-gbpages", action="store_true",
                   help="a direct map without 1 GiB pages (a CPU without GBPAGES, nogbpages, or "
                   "CONFIG_X86_DIRECT_GBPAGES=n); by default every 512 leaves are one 1 GiB "
                   "page until something splits it")
    p.add_argument("--runs", type=_count(1, 100_000, "--runs"), default=200, metavar="R",
                   help="random placements per point (default 200)")
    p.add_argument("--seed", type=_count(0, 2**63 - 1, "--seed"), default=0)
    p.add_argument("--timeout", type=_count(1, 86_400, "--timeout"), default=60,
                   metavar="SECONDS", help="z3's limit per worst case (default 60)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--plot", metavar="FILE.png", help="splits against programs loaded, "
                   "one line per design (worst solid, median dashed)")
    return p


def measure(profile: str, w: Workload, m: Machine, size: int, runs: int, seed: int,
            timeout: float, kind: str = "bpf") -> dict[str, Any]:
    """Every figure of one table row: `size` is a program's bytes (bpf) or a module's text
    pages (modules)."""
    d = DESIGNS[kind](get_profile(profile).flags, size, m)
    worst = worst_case(d, w, m, timeout)
    worst3 = worst_case(d, w, m, timeout, level=3)
    typical = simulate_levels(d, w, m, runs, seed)
    stats = summary([l2 for l2, _ in typical])
    stats3 = summary([l3 for _, l3 in typical])
    units = sum(1 for e in events(d, w) if e.alloc)
    return {
        "profile": profile, "design": as_json(d), "units_allocated": units,
        "worst": {"value": worst.value, "status": worst.status},
        "typical": {**stats, "runs": runs, "seed": seed},
        "level3": {"worst": {"value": worst3.value, "status": worst3.status}, "typical": stats3},
        "vmalloc_collapses": vmalloc_rebuilds(d, w),
        "small_fraction": {"worst": None if worst.value is None else worst.value / m.leaves,
                           "median": stats["median"] / m.leaves},
    }


def _row(r: dict[str, Any]) -> str:
    w = r["worst"]["value"]
    t = r["typical"]
    sf = r["small_fraction"]
    w3 = r["level3"]["worst"]["value"]
    worst = "unknown" if w is None else str(w)
    worst3 = "unknown" if w3 is None else str(w3)
    frac = "?" if sf["worst"] is None else f"{100 * sf['worst']:.1f}%"
    return (f"{r['profile']:<11}{r['design']['name']:<36}{r['units_allocated']:>6}"
            f"{worst:>7}{t['median']:>8.0f}{t['p90']:>6.0f}{worst3:>6}"
            f"{r['level3']['typical']['median']:>5.0f}{r['vmalloc_collapses']:>6}"
            f"   {frac:>6} / {100 * sf['median']:.1f}%")


HEADER = (f"{'':<53}{'2 MiB leaves split':<20}{'1 GiB':<10}"
          f"{'vmalloc':<9}small pages\n"
          f"{'profile':<11}{'design':<36}{'units':>6}{'worst':>7}{'median':>8}{'p90':>6}"
          f"{'worst':>6}{'med':>5}{'PMDs':>6}   (worst / median)")


def cmd_fragmentation(argv: Sequence[str]) -> int:
    a = parser().parse_args(argv)
    profiles = list(dict.fromkeys(a.profile or REPRESENTATIVES[a.kind]))
    m = Machine(leaves=a.leaves, gib=0 if a.no_gbpages else 512)
    size = a.module_pages if a.kind == "modules" else a.prog_size
    # an unknown profile, or one without this kind of user, is bad input before anything runs
    flags = {name: get_profile(name).flags for name in profiles}
    for name, f in flags.items():
        try:
            DESIGNS[a.kind](f, size, m)
        except ValueError as e:
            raise UsageError(f"{name}: {e}") from None
    try:
        return _run(a, profiles, m, Workload(a.load, a.churn), size)
    except ValueError as e:  # the machine has no room for the workload: raise --leaves
        raise UsageError(str(e)) from None


def _run(a: Any, profiles: list[str], m: Machine, w: Workload, size: int) -> int:
    series_loads = list(range(0, a.load + 1)) if a.plot or a.json else []
    progress = Progress(len(profiles) * (1 + len(series_loads)), bar=not a.json)
    results: list[dict[str, Any]] = []
    if not a.json:
        what = (f"{a.load} modules of {a.module_pages} text pages" if a.kind == "modules"
                else f"{a.load} {WHAT[a.kind]} of {a.prog_size} bytes")
        gib = "no 1 GiB pages" if a.no_gbpages else f"{m.regions} of 1 GiB"
        print(f"workload: {what}, {a.churn} unload/load pairs; machine: {a.leaves} leaves of "
              f"2 MiB ({gib}); typical: {a.runs} placements, seed {a.seed}")
        print(HEADER)
    try:
        for name in profiles:
            progress.note(f"{name}: workload")
            r = measure(name, w, m, size, a.runs, a.seed, a.timeout, a.kind)
            progress.advance()
            series = []
            for n in series_loads:
                progress.note(f"{name}: {n} {WHAT[a.kind]}")
                s = measure(name, Workload(n, 0), m, size, a.runs, a.seed, a.timeout, a.kind)
                series.append({"load": n, "worst": s["worst"]["value"],
                               "median": s["typical"]["median"], "p90": s["typical"]["p90"]})
                progress.advance()
            r["series"] = series
            results.append(r)
            if not a.json:
                print(_row(r), flush=True)
    finally:
        progress.close()
    unknown = any(r["worst"]["value"] is None or any(s["worst"] is None for s in r["series"])
                  for r in results)
    doc = {"machine": {"leaves": m.leaves, "frames_per_leaf": m.frames,
                       "leaves_per_1gib_page": m.gib},
           "workload": {"kind": a.kind, "load": a.load, "churn": a.churn,
                        "prog_size": a.prog_size, "module_pages": a.module_pages},
           "results": results}
    if a.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
    if a.plot:
        plot(results, a.plot, {"bpf": "BPF programs"}.get(a.kind, WHAT[a.kind]) + " loaded")
        if not a.json:
            print(f"plot: {a.plot}")
    return 3 if unknown else 0


def plot(results: list[dict[str, Any]], path: str, xlabel: str) -> None:
    """Splits against programs loaded, one colour per design: worst solid, median dashed.
    Written to a temporary name first, so that a failure leaves no partial file."""
    import os

    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'allocheck[png]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, r in enumerate(results):
        colour = f"C{k}"
        xs = [s["load"] for s in r["series"]]
        label = f"{r['profile']}: {r['design']['name']}"
        ax.plot(xs, [s["worst"] for s in r["series"]], color=colour, marker="o", label=label)
        ax.plot(xs, [s["median"] for s in r["series"]], color=colour, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("direct-map leaves split (2 MiB -> 4 KiB)")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_title("Direct-map splits per design (solid: worst case, dashed: median)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
