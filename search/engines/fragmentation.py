"""Direct-map fragmentation of a design under a workload: the worst case over every
placement (exact, z3 Optimize) and the typical case (seeded simulation).

The placement model is `model.placement`; this module only searches it.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

import z3

from model.placement import (
    Design,
    Event,
    Machine,
    Workload,
    check_placement,
    events,
    split_leaves,
    split_regions,
)


@dataclass(frozen=True)
class Worst:
    """The most leaves any placement splits; `value` None when z3 did not settle it."""

    value: int | None
    status: str  # "exact" or "unknown: why"
    witness: dict[int, list[int]] = field(default_factory=dict, compare=False)


def worst_case(d: Design, w: Workload, m: Machine, timeout: float = 60.0,
               greedy: bool = True, level: int = 2) -> Worst:
    """Maximise the number of split leaves (`level` 2: 2 MiB leaves split to 4 KiB pages;
    3: 1 GiB pages split to 2 MiB ones) over every placement the page allocator could
    choose: each 4 KiB page in any leaf with a free frame, each order-9 block in any leaf
    nobody else uses, at every moment of the run. z3's Optimize answers exactly; where it
    answers unknown or runs out of `timeout` seconds, so does this (never a guess). First
    an adversary's greedy placement: where it splits as many as there are pages (or leaves,
    or 1 GiB pages), nothing can split more, and the solver is not asked.

    Pages of one unit are interchangeable, so the unknowns are how many of a unit's pages
    land in each leaf; leaves are interchangeable too (all free at the start), so the split
    ones are taken to be a prefix (for level 3: the split 1 GiB pages, when all are whole).
    A split leaf holds at least one page: stated per leaf, it gives z3 the linear bound
    (splits <= pages) that pigeonhole reasoning would not."""
    if level not in (2, 3):
        raise ValueError(f"level {level}: the direct map splits at level 2 or 3")
    if greedy:
        value, bound, placement = (greedy_worst if level == 2 else greedy_worst3)(d, w, m)
        if value == bound:
            return Worst(value, "exact", placement)
    evs = events(d, w)
    opt = z3.Optimize()
    opt.set("timeout", max(1, int(timeout * 1000)))
    count = _placements(evs, m, opt)
    if level == 2:
        # what splits a leaf: a 4 KiB page made RO in it, or a huge unit changed in part
        hits = {e.unit: e.huge for e in evs if e.alloc and e.splits}
        groups = [[lf] for lf in range(m.leaves)]
        symmetric = True
    else:  # any change to a leaf inside a 1 GiB page splits that page
        hits = {e.unit: e.huge for e in evs if e.alloc and e.changes} if m.gib else {}
        groups = [list(range(r * m.gib, min(m.leaves, (r + 1) * m.gib)))
                  for r in range(m.regions)]
        symmetric = m.leaves % max(1, m.gib) == 0
    if not hits:
        return Worst(0, "exact", _placement(None, count, m))
    split = []
    for k, group in enumerate(groups):
        weight = z3.Sum([z3.If(count[u][lf] == m.frames, 1, 0) if huge else count[u][lf]
                         for u, huge in sorted(hits.items()) for lf in group])
        y = z3.Bool(f"split.{k}")
        opt.add(y == (weight >= 1), z3.If(y, 1, 0) <= weight)
        split.append(y)
    if symmetric:
        for k in range(len(split) - 1):
            opt.add(z3.Implies(split[k + 1], split[k]))
    goal = opt.maximize(z3.Sum([z3.If(y, 1, 0) for y in split]))
    answer = opt.check()
    if answer != z3.sat:
        return Worst(None, f"unknown: z3 answered {answer} ({opt.reason_unknown()})")
    placement = _placement(opt.model(), count, m)
    why = check_placement(placement, evs, m)
    if why is not None:  # the encoding and the model disagree: never report it
        raise AssertionError(f"z3's worst placement is impossible: {why}")
    value = len(split_leaves(placement, evs) if level == 2 else split_regions(placement, evs, m))
    if value != goal.value().as_long():
        raise AssertionError("z3's optimum and the placement's splits differ")
    return Worst(value, "exact", placement)


def _placements(evs: list[Event], m: Machine, opt: Any) -> dict[int, list[Any]]:
    """Per allocated unit, its pages per leaf, constrained to what the machine allows."""
    count: dict[int, list[Any]] = {}
    for e in evs:
        if not e.alloc:
            continue
        cs = [z3.Int(f"u{e.unit}.l{lf}") for lf in range(m.leaves)]
        count[e.unit] = cs
        need = m.frames if e.huge else e.pages
        opt.add(z3.Sum(cs) == need)
        for c in cs:
            # an order-9 block is one whole leaf; 4 KiB pages go anywhere
            opt.add(z3.Or(c == 0, c == m.frames) if e.huge else c >= 0)
    live: set[int] = set()
    for e in evs:  # capacity when something is allocated (frees only make room)
        if not e.alloc:
            live.discard(e.unit)
            continue
        live.add(e.unit)
        for lf in range(m.leaves):
            opt.add(z3.Sum([count[u][lf] for u in sorted(live)]) <= m.frames)
    return count


def _placement(model: Any, count: dict[int, list[Any]], m: Machine) -> dict[int, list[int]]:
    """A leaf per page (one per order-9 block) from the per-leaf counts."""
    out: dict[int, list[int]] = {}
    for u, cs in count.items():
        ns = [model.eval(c, model_completion=True).as_long() if model is not None else 0
              for c in cs]
        if model is None:
            ns[0] = m.frames  # nothing small: any placement; the first leaf
        huge = any(n == m.frames for n in ns) and sum(ns) == m.frames
        out[u] = [ns.index(m.frames)] if huge else [lf for lf, n in enumerate(ns) for _ in range(n)]
    return out


class _Memory:
    """Free frames per leaf while a run places its units."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.used = [0] * m.leaves
        self.whole = [False] * m.leaves

    def room(self, lf: int) -> int:
        return 0 if self.whole[lf] else self.m.frames - self.used[lf]

    def with_room(self) -> list[int]:
        """Leaves with a free frame, in order; none is bad input (the workload does not fit)."""
        pool = [lf for lf in range(self.m.leaves) if self.room(lf)]
        if not pool:
            raise _no_room("free frame")
        return pool

    def empty(self) -> list[int]:
        """Leaves free for an order-9 block, in order; none is bad input."""
        free = [lf for lf in range(self.m.leaves) if self.room(lf) == self.m.frames]
        if not free:
            raise _no_room("free leaf for an order-9 block")
        return free


def _run(evs: list[Event], m: Machine, pick_page: Any, pick_leaf: Any) -> dict[int, list[int]]:
    """Place every unit of `evs` with the given choices; returns the placement."""
    mem = _Memory(m)
    placement: dict[int, list[int]] = {}
    for e in evs:
        if not e.alloc:
            for lf in placement[e.unit]:
                if e.huge:
                    mem.whole[lf] = False
                else:
                    mem.used[lf] -= 1
            continue
        if e.huge:
            lf = pick_leaf(mem)
            mem.whole[lf] = True
            placement[e.unit] = [lf]
            continue
        spots = []
        for _k in range(e.pages):
            lf = pick_page(mem)
            mem.used[lf] += 1
            spots.append(lf)
        placement[e.unit] = spots
    return placement


def _no_room(what: str) -> ValueError:
    return ValueError(f"the machine has no {what}: raise --leaves")


def simulate(d: Design, w: Workload, m: Machine, runs: int, seed: int) -> list[int]:
    """Split leaves in `runs` placements drawn at random (seeded); see `simulate_levels`."""
    return [l2 for l2, _ in simulate_levels(d, w, m, runs, seed)]


def simulate_levels(d: Design, w: Workload, m: Machine, runs: int,
                    seed: int) -> list[tuple[int, int]]:
    """Split 2 MiB leaves and split 1 GiB pages in `runs` placements drawn at random
    (seeded): each 4 KiB page on a free frame chosen uniformly (rejection sampling: a leaf at
    random, kept with probability free frames / frames), each order-9 block on a free leaf
    chosen uniformly."""
    evs = events(d, w)
    rng = random.Random(seed)

    def page(mem: _Memory) -> int:
        mem.with_room()  # there is a free frame to find
        while True:
            lf = rng.randrange(m.leaves)
            if rng.randrange(m.frames) < mem.room(lf):
                return lf

    def leaf(mem: _Memory) -> int:
        return rng.choice(mem.empty())

    out = []
    for _ in range(runs):
        placement = _run(evs, m, page, leaf)
        out.append((len(split_leaves(placement, evs)), len(split_regions(placement, evs, m))))
    return out


def greedy_worst(d: Design, w: Workload, m: Machine) -> tuple[int, int, dict[int, list[int]]]:
    """An adversary's placement: each 4 KiB page in a leaf nobody has split yet while one has
    room, each order-9 block in an empty leaf that is split already where there is one.
    Returns (its splits, the upper bound min(pages and blocks that split, leaves), placement):
    where they are equal the worst case is exact without a solver."""
    evs = events(d, w)
    split: set[int] = set()

    def page(mem: _Memory) -> int:
        pool = mem.with_room()
        lf = ([lf for lf in pool if lf not in split] or pool)[0]
        split.add(lf)
        return lf

    def leaf(mem: _Memory) -> int:
        free = mem.empty()
        if d.huge_splits:  # a block that will be split: somewhere nothing is split yet
            fresh = [lf for lf in free if lf not in split]
            split.add((fresh or free)[0])
            return (fresh or free)[0]
        spent = [lf for lf in free if lf in split]
        return (spent or free[::-1])[0]

    placement = _run(evs, m, page, leaf)
    pages = sum(1 if e.huge else e.pages for e in evs if e.alloc and e.splits)
    return len(split_leaves(placement, evs)), min(pages, m.leaves), placement


def greedy_worst3(d: Design, w: Workload, m: Machine) -> tuple[int, int, dict[int, list[int]]]:
    """The adversary for 1 GiB pages: each page or block whose alias changes goes to a 1 GiB
    page nobody has touched yet while one has room. Returns (its splits, the upper bound
    min(changing pages and blocks, 1 GiB pages), placement)."""
    evs = events(d, w)
    touched: set[int] = set()

    def spread(pool: list[int], changes: bool) -> int:
        fresh = [lf for lf in pool if lf // m.gib not in touched] if m.gib else []
        lf = (fresh or pool)[0]
        if changes and m.gib:
            touched.add(lf // m.gib)
        return lf

    placement = _run(evs, m, lambda mem: spread(mem.with_room(), d.changes_alias),
                     lambda mem: spread(mem.empty(), d.changes_alias))
    pages = sum(1 if e.huge else e.pages for e in evs if e.alloc and e.changes)
    return len(split_regions(placement, evs, m)), min(pages, m.regions), placement


def percentile(xs: list[int], q: float) -> float:
    """The q-quantile (0..1) of `xs`, nearest rank."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))
    return float(s[k])


def summary(xs: list[int]) -> dict[str, float]:
    return {"median": float(statistics.median(xs)), "p90": percentile(xs, 0.9),
            "max": float(max(xs)), "min": float(min(xs))}
