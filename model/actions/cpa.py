"""change_page_attr: set_memory_* and set_direct_map_* (arch/x86/mm/pat/set_memory.c).

Helpers that the owners of special-permission memory call; the W^X steps themselves are
actions in `code.py`. A change that covers part of a huge leaf must split it, splitting
needs a page-table page, and with `Ctx.faults` that allocation may fail (`fail=True`
means every split attempted during this call fails, as under memory pressure).
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.actions.tlb import vm_unmap_aliases
from model.logic import Logic
from model.state import DirectMap, State, evolve


def _leaf_of(f: int, c: Ctx) -> int:
    return f // c.bounds.hpage


def _count_split(splits: Any, need: Any, c: Ctx, L: Logic) -> Any:
    # saturating at the number of leaves: without collapse a leaf splits once, so the count
    # never gets there; with collapse (6.15) it would grow without bound
    return L.ite(L.and_(need, L.lt(splits, c.bounds.areas)), L.add(splits, 1), splits)


def change_page_attr(
    s: State,
    area: int,
    frames: range,
    w: bool | None,
    x: bool | None,
    fail: bool,
    c: Ctx,
    L: Logic,
) -> tuple[State, Any]:
    """__change_page_attr_set_clr over `frames` of vm area `area`; returns (state, error).

    x86 flushes every lazily freed vmap area first (vm_unmap_aliases). For each page: the
    vmalloc PTE first (the primary), splitting a huge vmalloc mapping
    when the range covers only part of it; then, unless only NX changes (x86: "No alias
    checking for _NX bit modifications"), the direct-map alias via cpa_process_alias,
    splitting a direct-map leaf the change covers only partly. A failed split returns
    -ENOMEM at once: pages before it are changed, the failing page's primary may already
    be changed while its alias is not, later pages are untouched.
    """
    b, fl = c.bounds, c.flags
    if not fl.set_memory:
        return s, False  # the generic stubs: return 0, change nothing
    if fl.cpa_alias:
        # x86 change_page_attr_set_clr (pageattr.c 5.1, set_memory.c 5.4 on) first calls
        # vm_unmap_aliases(): "Must avoid aliasing mappings in the highmem code"
        s = vm_unmap_aliases(s, c, L)
    a = s.areas
    zone = b.zone(area)
    whole_area = len(frames) == b.hpage or frames == zone
    pte_w, pte_x = a.pte_w, a.pte_x
    dm = s.dmap
    dm_w, dm_x, split, splits = dm.w, dm.x, dm.split, dm.splits
    vsplit = a.vsplit
    stopped: Any = False

    huge_map = L.and_(a.huge[area], L.not_(a.vsplit[area]))

    def differs(cur_w: Any, cur_x: Any, x: bool | None = x) -> Any:
        terms = []
        if w is not None:
            terms.append(L.ne(cur_w, w))
        if x is not None:
            terms.append(L.ne(cur_x, x))
        return L.any_(terms)

    # what reaches the alias: _PAGE_RW, and _PAGE_NX only where the arch lets it
    alias_x = x if fl.cpa_alias_nx else None

    # the primary: a partial change of a huge vmalloc mapping splits its PMD first
    if not whole_area:
        need_vsplit = L.and_(huge_map, L.any_(differs(pte_w[f], pte_x[f]) for f in frames))
        if fail:
            stopped = need_vsplit
        else:
            vsplit = L.store(vsplit, area, L.or_(vsplit[area], need_vsplit))
    # a primary still mapped huge covers whole direct-map leaves: its alias needs no split
    alias_whole_leaf = L.and_(huge_map, whole_area) if len(frames) == b.hpage else False
    alias = fl.cpa_alias and (w is not None or fl.cpa_alias_nx)
    for f in frames:
        go = L.not_(stopped)
        if w is not None:
            pte_w = L.store(pte_w, f, L.ite(go, w, pte_w[f]))
        if x is not None:
            pte_x = L.store(pte_x, f, L.ite(go, x, pte_x[f]))
        if not alias:
            continue
        leaf = _leaf_of(f, c)
        need = L.and_(go, L.not_(alias_whole_leaf), L.not_(split[leaf]),
                      differs(dm_w[f], dm_x[f], alias_x))
        if fail:
            stopped = L.or_(stopped, need)
            go = L.and_(go, L.not_(need))
        else:
            split = L.store(split, leaf, L.or_(split[leaf], need))
            splits = _count_split(splits, need, c, L)
        if w is not None:
            dm_w = L.store(dm_w, f, L.ite(go, w, dm_w[f]))
        if alias_x is not None:
            dm_x = L.store(dm_x, f, L.ite(go, alias_x, dm_x[f]))
    s = s.replace(
        areas=evolve(a, pte_w=pte_w, pte_x=pte_x, vsplit=vsplit),
        dmap=DirectMap(dm.present, dm_w, dm_x, split, splits),
    )
    return s, stopped


def set_memory_ro(s: State, area: int, frames: range, fail: bool, c: Ctx, L: Logic) -> State:
    """set_memory_ro (set_memory.c): clear _PAGE_RW on the range and its direct-map alias.
    Every caller in the modelled versions ignores the error it may return."""
    return change_page_attr(s, area, frames, False, None, fail, c, L)[0]


def set_memory_rw(s: State, area: int, frames: range, fail: bool, c: Ctx, L: Logic) -> State:
    """set_memory_rw (set_memory.c): set _PAGE_RW on the range and its direct-map alias."""
    return change_page_attr(s, area, frames, True, None, fail, c, L)[0]


def set_memory_x(s: State, area: int, frames: range, fail: bool, c: Ctx, L: Logic) -> State:
    """set_memory_x (set_memory.c): clear _PAGE_NX on the range only (no alias check)."""
    return change_page_attr(s, area, frames, None, True, fail, c, L)[0]


def set_memory_nx(s: State, area: int, frames: range, fail: bool, c: Ctx, L: Logic) -> State:
    """set_memory_nx (set_memory.c): set _PAGE_NX on the range only (no alias check)."""
    return change_page_attr(s, area, frames, None, False, fail, c, L)[0]


def set_direct_map(s: State, f: int, present: bool, fail: bool, c: Ctx, L: Logic) -> State:
    """set_direct_map_invalid_noflush / set_direct_map_default_noflush (5.2, set_memory.c):
    one 4 KiB page of the direct map made not-present, or RW+NX+present again. Changing
    one page of an unsplit leaf splits it; with `fail` the split fails and the page keeps
    whatever it had (vm_remove_mappings ignores the error)."""
    dm = s.dmap
    leaf = _leaf_of(f, c)
    differs = L.or_(L.not_(dm.present[f]), L.not_(dm.w[f]), dm.x[f]) if present else dm.present[f]
    need = L.and_(L.not_(dm.split[leaf]), differs)
    go = L.not_(need) if fail else True
    split, splits = dm.split, dm.splits
    if not fail:
        split = L.store(split, leaf, L.or_(split[leaf], need))
        splits = _count_split(splits, need, c, L)
    pres = L.store(dm.present, f, L.ite(go, present, dm.present[f]))
    w, x = dm.w, dm.x
    if present:
        w = L.store(w, f, L.ite(go, True, w[f]))
        x = L.store(x, f, L.ite(go, False, x[f]))
    return s.replace(dmap=DirectMap(pres, w, x, split, splits))


def set_memory_rox(s: State, area: int, frames: range, fail: bool, c: Ctx,
                   L: Logic) -> tuple[State, Any]:
    """set_memory_rox (60463628c9e0, arch/x86/mm/pat/set_memory.c, 6.2): one
    change_page_attr pass clearing _PAGE_RW and _PAGE_NX; the alias loses _PAGE_RW and
    keeps NX ("Directmap always has NX set, do not modify", d597416683d5). Returns
    (state, error)."""
    s, err = change_page_attr(s, area, frames, False, True, fail, c, L)
    if c.flags.cpa_collapse:
        s = collapse_large_pages(s, area, c, L)
    return s, err


def collapse_large_pages(s: State, area: int, c: Ctx, L: Logic) -> State:
    """collapse_large_pages (41d88484c71c, set_memory.c, 6.15), run by set_memory_rox
    (CPA_COLLAPSE) over the addresses of the request after the TLB flush: the split huge
    vmalloc mapping of `area` becomes one PMD leaf again when all its PTEs agree. The
    direct-map alias is changed by cpa_process_alias, which never reaches cpa_flush: a
    split alias stays split (read from the 6.15 diff, not from a report)."""
    a = s.areas
    z = c.bounds.zone(area)
    same = L.all_(L.eq(fld[f], fld[z.start]) for fld in (a.pte_w, a.pte_x) for f in z[1:])
    if not c.flags.collapse_same_flags:
        same = True
    vsame = L.and_(a.huge[area], L.eq(a.npages[area], c.bounds.hpage), same)
    vsplit = L.store(a.vsplit, area, L.and_(a.vsplit[area], L.not_(vsame)))
    return s.replace(areas=evolve(a, vsplit=vsplit))


def lock_text(s: State, area: int, frames: range, fail: bool, c: Ctx,
              L: Logic) -> tuple[State, Any]:
    """Make text read-only and executable the way the version's BPF, kprobes and ftrace
    code does: set_memory_ro then set_memory_x (to 6.1), or set_memory_rox (6.2 on).
    Returns (state, error): the error of either call."""
    if c.flags.set_memory_rox:
        return set_memory_rox(s, area, frames, fail, c, L)
    return cpa_calls(s, area, frames, fail, c, L, (False, None), (None, True))


def cpa_calls(s: State, area: int, frames: range, fail: bool, c: Ctx, L: Logic,
              *changes: tuple[bool | None, bool | None]) -> tuple[State, Any]:
    """change_page_attr once per (w, x) of `changes`, in order, each call made whatever the
    one before returned (no caller rolls back); returns (state, whether any failed)."""
    errors = []
    for w, x in changes:
        s, err = change_page_attr(s, area, frames, w, x, fail, c, L)
        errors.append(err)
    return s, L.or_(*errors)
