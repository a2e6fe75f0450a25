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

    def differs(cur_w: Any, cur_x: Any) -> Any:
        terms = []
        if w is not None:
            terms.append(L.ne(cur_w, w))
        if x is not None:
            terms.append(L.ne(cur_x, x))
        return L.any_(terms)

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
        need = L.and_(go, L.not_(alias_whole_leaf), L.not_(split[leaf]), differs(dm_w[f], dm_x[f]))
        if fail:
            stopped = L.or_(stopped, need)
            go = L.and_(go, L.not_(need))
        else:
            split = L.store(split, leaf, L.or_(split[leaf], need))
            splits = L.ite(need, L.add(splits, 1), splits)
        if w is not None:
            dm_w = L.store(dm_w, f, L.ite(go, w, dm_w[f]))
        if x is not None:
            dm_x = L.store(dm_x, f, L.ite(go, x, dm_x[f]))
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
        splits = L.ite(need, L.add(splits, 1), splits)
    pres = L.store(dm.present, f, L.ite(go, present, dm.present[f]))
    w, x = dm.w, dm.x
    if present:
        w = L.store(w, f, L.ite(go, True, w[f]))
        x = L.store(x, f, L.ite(go, False, x[f]))
    return s.replace(dmap=DirectMap(pres, w, x, split, splits))
