"""Physical placement of executable memory and what it costs the direct map (issue 10).

The safety model gives each vm area slot a zone of its own, which is also one direct-map
leaf: placement is fixed, so it cannot say how many leaves a design splits. This module is
the other half: where the page allocator puts the pages behind each executable allocation,
and which 2 MiB direct-map leaves (PMD entries of the kernel's linear map) a design splits
into 4 KiB PTEs. It is a transition system of its own, small enough for z3 to maximise over
every placement and fast enough to sample thousands of placements; it takes its designs
from the same profile flags as the safety model.

What splits a leaf (arch/x86/mm/pat/set_memory.c): a permission change that covers part of
a leaf, as set_memory_ro/rox on a 4 KiB page does through cpa_process_alias. A leaf
changed whole (a PMD-mapped pack, a ROX cache huge page) is changed in place, not split.
Before 6.15 a split leaf is never merged again; 6.15's collapse (41d88484c71c) rebuilds the
PMD over the addresses of the set_memory_rox request, which for vmalloc memory are the
vmalloc ones: the direct-map alias stays split (read from the diff, docs/kernel-notes.md Q9).
So in every modelled kernel a split leaf stays split, and the count only grows; the kernel
counts the same events in /proc/vmstat direct_map_level2_splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.actions.base import Ctx
from model.actions.code import module_alloc_huge
from model.bounds import Bounds
from model.profiles import Flags

BPF_PROG_CHUNK_SIZE = 64  # bytes (kernel/bpf/core.c)
PAGE_SIZE = 4096


@dataclass(frozen=True)
class Machine:
    """The modelled memory: `leaves` direct-map leaves of `frames` 4 KiB frames each, and
    `gib` leaves per 1 GiB direct-map page (PUD leaf; 0: the direct map has none).

    x86-64 maps the direct map with 1 GiB pages where the CPU has them and
    `direct_gbpages` is on (CONFIG_X86_DIRECT_GBPAGES=y by default); any change to part of
    one splits it into 2 MiB pages first (`__split_large_page` at PG_LEVEL_1G, counted as
    direct_map_level3_splits), even a change to one whole 2 MiB leaf."""

    leaves: int = 64  # 128 MiB of 2 MiB leaves
    frames: int = 512  # PTRS_PER_PTE
    gib: int = 0  # PTRS_PER_PMD (512) on a machine with 1 GiB pages

    def __post_init__(self) -> None:
        if not (1 <= self.leaves <= 4096 and 1 <= self.frames <= 512 and 0 <= self.gib <= 512):
            raise ValueError(f"machine leaves={self.leaves}, frames={self.frames}, "
                             f"gib={self.gib}: leaves must be 1..4096, frames 1..512, gib 0..512")

    @property
    def regions(self) -> int:
        """1 GiB direct-map pages (the last one may be partly populated)."""
        return -(-self.leaves // self.gib) if self.gib else 0


@dataclass(frozen=True)
class Design:
    """How a kernel backs BPF programs, from its flags.

    `pack_pages`: 4 KiB pages per allocation unit (a pack, or one program's image);
    `huge`: the unit is one PMD-aligned order-9 block mapped by a PMD, changed whole;
    `programs`: programs per unit (chunks of BPF_PROG_CHUNK_SIZE)."""

    name: str
    pack_pages: int
    huge: bool
    programs: int
    source: str
    changes_alias: bool = True  # set_memory_* reaches the direct map at all
    # a huge unit whose users change part of it, splitting its own leaf (the 6.15 ROX
    # cache: execmem_make_temp_rw on a module's pages of a cache huge page)
    huge_splits: bool = False
    # vmalloc PMDs set_memory_rox rebuilds over its own addresses (41d88484c71c, 6.15) per
    # program/module loaded and per one unloaded: after the load's temp RW window, and
    # (6.17) after the free path's RW, INT3, ROX. collapse_pmd_page counts only direct-map
    # addresses (`virt_addr_valid`), so these never reach /proc/vmstat
    vmalloc_rebuilds: tuple[int, int] = (0, 0)


def _never_changed(flags: Flags, pages: int) -> Design | None:
    """powerpc 5.13: no set_memory_* at all, and its change_memory_attr never touches the
    linear map: nothing splits it, whatever the user."""
    if flags.set_memory and flags.cpa_alias:
        return None
    return Design("direct map never changed", pages, False, 1,
                  "no ARCH_HAS_SET_MEMORY, no alias processing (powerpc 5.13)", False)


def _module_alloc_maps_pmd(flags: Flags) -> bool:
    """The safety model's own rule: is a PMD_SIZE module_alloc mapped by a PMD?"""
    ctx = Ctx(Bounds(), flags)
    return module_alloc_huge(ctx, ctx.bounds.hpage)


def design(flags: Flags, prog_size: int, machine: Machine) -> Design:
    """The BPF program design of a profile: per-program images (module_alloc), or packs of
    PAGE_SIZE, of one PMD (5.18-rc1, mapped huge), or PMD_SIZE * nodes mapped with 4 KiB
    pages (6.0 on: module_alloc does not opt in to huge vmalloc)."""
    pages = -(-prog_size // PAGE_SIZE)  # of one program's image
    never = _never_changed(flags, pages)
    if never is not None:
        return never
    chunks = -(-prog_size // BPF_PROG_CHUNK_SIZE)
    per_page = max(1, (PAGE_SIZE // BPF_PROG_CHUNK_SIZE) // chunks)
    if not flags.bpf_prog_pack:
        return Design("module_alloc per program", pages, False, 1,
                      "bpf_jit_binary_alloc: one module_alloc image per program (5.2 to 5.17)")
    if flags.pack_size == "page":
        return Design("4 KiB packs", 1, False, per_page,
                      "bpf_prog_pack of PAGE_SIZE (559089e0a93d, 5.18 and 5.19)")
    huge = _module_alloc_maps_pmd(flags)  # module_alloc(BPF_PROG_PACK_SIZE)
    return Design("2 MiB packs, PMD-mapped" if huge else "PMD_SIZE packs, 4 KiB-mapped",
                  machine.frames, huge, per_page * machine.frames,
                  "BPF_HPAGE_SIZE packs mapped huge (57631054fae6, 5.18-rc1)" if huge else
                  "PMD_SIZE * num_possible_nodes() packs, module_alloc not huge (6.0 on)")


def module_design(flags: Flags, module_pages: int, machine: Machine) -> Design:
    """How a kernel backs module text: module_alloc / execmem_alloc pages per module (to
    6.12), or carved out of the execmem ROX cache's huge pages: 6.13-rc1 takes the whole huge
    page out of the direct map at once (no split), 6.15 on writes the text through
    execmem_make_temp_rw, which changes part of the huge page's alias and splits its leaf
    (restore_rox collapses the vmalloc PMD only)."""
    never = _never_changed(flags, module_pages)
    if never is not None:
        return never
    if flags.execmem != "rox_cache":
        if module_pages == machine.frames and _module_alloc_maps_pmd(flags):
            # 5.18-rc1 maps a PMD_SIZE module_alloc with a PMD, and module_enable_ro on its
            # text, part of the image, splits the leaf
            return Design("module_alloc per module, PMD-mapped", machine.frames, True, 1,
                          "module_alloc with huge vmalloc (5.18-rc1)", huge_splits=True)
        return Design("module_alloc per module", module_pages, False, 1,
                      "module text from module_alloc / execmem_alloc, 4 KiB pages")
    per = max(1, machine.frames // module_pages)
    if flags.rox_cache_direct_map == "invalid":
        return Design("ROX cache, out of the direct map", machine.frames, True, per,
                      "execmem_cache_populate takes each huge page out whole (6.13-rc1)")
    return Design("ROX cache, text via temp RW", machine.frames, True, per,
                  "execmem_make_temp_rw splits the cache huge page's alias leaf (6.15 on)",
                  huge_splits=True,
                  vmalloc_rebuilds=(int(flags.cpa_collapse),
                                    int(flags.cpa_collapse and flags.rox_cache_free == "rw_fill_rox")))


def trampoline_design(flags: Flags, size: int, machine: Machine) -> Design:
    """How a kernel backs BPF trampolines (kernel/bpf/trampoline.c of each version): a page
    each from bpf_jit_alloc_exec made executable with set_memory_x alone (5.5 to 6.0:
    change_page_attr_set_clr skips the alias for _NX-only changes, "No alias checking for
    _NX bit modifications"), a page each made set_memory_ro then set_memory_x (6.1) or
    set_memory_rox (6.2 to 6.7), which changes the alias; or bpf_prog_pack chunks
    (arch_alloc_bpf_trampoline, 6.8 on x86), the BPF programs' design."""
    if flags.bpf_trampoline == "none":
        raise ValueError("this kernel has no BPF trampolines (fec56f5890d9, 5.5)")
    if flags.bpf_trampoline == "pack":
        return design(flags, size, machine)
    never = _never_changed(flags, 1)
    if never is not None:
        return never
    if flags.bpf_trampoline == "rwx":
        return Design("trampoline page, set_memory_x only", 1, False, 1,
                      "bpf_jit_alloc_exec_page: set_memory_x, RW+X for life (5.5 to 6.0)", False)
    return Design("trampoline page, made RO", 1, False, 1,
                  "bpf_tramp_image_alloc: a page each, set_memory_ro/rox (5b0d1c7bd572, 6.1)")


@dataclass(frozen=True)
class Workload:
    """`load` programs loaded, then `churn` pairs of (unload the oldest, load one)."""

    load: int
    churn: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.load <= 100_000 and 0 <= self.churn <= 100_000):
            raise ValueError("load and churn must be 0..100000")


@dataclass(frozen=True)
class Event:
    """One allocation unit coming (`alloc`) or going, with the pages it needs."""

    unit: int
    alloc: bool
    pages: int
    huge: bool
    splits: bool  # its 4 KiB pages split their leaves when made RO
    changes: bool = True  # its direct-map alias changes at all (a 1 GiB page around it splits)


def events(d: Design, w: Workload) -> list[Event]:
    """The allocation units' lives under the workload: a unit is allocated when a program
    finds no room in the live ones (first fit, as bpf_prog_pack_alloc) and freed when its
    last program goes (bpf_prog_pack_free)."""
    out: list[Event] = []
    units: list[list[int]] = []  # per unit: live program ids
    where: dict[int, int] = {}

    def load(prog: int) -> None:
        for u, progs in enumerate(units):
            if progs is not None and len(progs) < d.programs:
                progs.append(prog)
                where[prog] = u
                return
        units.append([prog])
        where[prog] = len(units) - 1
        out.append(Event(len(units) - 1, True, d.pack_pages, d.huge, _splits(d),
                         d.changes_alias))

    def unload(prog: int) -> None:
        u = where.pop(prog)
        units[u].remove(prog)
        if not units[u]:
            units[u] = None  # type: ignore[call-overload]
            out.append(Event(u, False, d.pack_pages, d.huge, _splits(d), d.changes_alias))

    nxt = 0
    for _ in range(w.load):
        load(nxt)
        nxt += 1
    for k in range(w.churn):
        unload(k)
        load(nxt)
        nxt += 1
    return out


def _splits(d: Design) -> bool:
    return d.changes_alias and (d.huge_splits if d.huge else True)


def split_leaves(placement: dict[int, list[int]], evs: list[Event]) -> set[int]:
    """The leaves a run splits, given where each unit's pages landed (a leaf per page)."""
    split: set[int] = set()
    for e in evs:
        if e.alloc and e.splits:
            split.update(placement[e.unit])
    return split


def split_regions(placement: dict[int, list[int]], evs: list[Event], m: Machine) -> set[int]:
    """The 1 GiB pages a run splits into 2 MiB pages: each one around a leaf whose alias
    any unit changes, whole or in part (none where the machine has no 1 GiB pages)."""
    if not m.gib:
        return set()
    return {lf // m.gib for e in evs if e.alloc and e.changes for lf in placement[e.unit]}


def vmalloc_rebuilds(d: Design, w: Workload) -> int:
    """vmalloc PMDs set_memory_rox rebuilds over a run, which /proc/vmstat does not count.
    What it counts (arch/x86/mm/pat/set_memory.c split_page_count) are `split_leaves` and
    `split_regions` (direct_map_level2_splits, _level3_splits); a split leaf stays split,
    since no modelled kernel collapses the direct map (6.15's set_memory_rox rebuilds the
    PMDs of its own vmalloc addresses, and collapse_pmd_page counts only `virt_addr_valid`
    ones), so direct_map_level2_collapses is not a figure any modelled design moves. A
    rebuild needs all 512 PTEs to agree again, which they do after each window when loads
    and unloads come one at a time, as a Workload's do; placement plays no part."""
    per_load, per_unload = d.vmalloc_rebuilds
    return per_load * (w.load + w.churn) + per_unload * w.churn


def check_placement(placement: dict[int, list[int]], evs: list[Event], m: Machine) -> str | None:
    """Why `placement` is impossible (None if it is possible): no leaf ever holds more pages
    than it has frames, and a huge unit takes a leaf nobody else uses."""
    used = [0] * m.leaves
    whole = [False] * m.leaves
    for e in evs:
        leaves = placement[e.unit]
        sign = 1 if e.alloc else -1
        if e.huge:
            (leaf,) = leaves
            if e.alloc and (used[leaf] or whole[leaf]):
                return f"unit {e.unit}: leaf {leaf} is not free for an order-9 block"
            whole[leaf] = e.alloc
            continue
        for leaf in leaves:
            used[leaf] += sign
            if whole[leaf] or used[leaf] > m.frames:
                return f"unit {e.unit}: leaf {leaf} has no free frame"
    return None


def as_json(d: Design) -> dict[str, Any]:
    return {"name": d.name, "pack_pages": d.pack_pages, "huge": d.huge,
            "programs_per_unit": d.programs, "changes_alias": d.changes_alias,
            "huge_splits": d.huge_splits, "vmalloc_rebuilds": list(d.vmalloc_rebuilds),
            "source": d.source}
