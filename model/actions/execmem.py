"""The execmem ROX cache (mm/execmem.c, 2e45474ab14f, 6.13-rc1; reworked for 6.15 and 6.17)
and the module loader, livepatch and /proc/kcore as they meet it (kernel/module/main.c,
kernel/livepatch/core.c, fs/proc/kcore.c).

The cache keeps PMD-sized huge pages mapped read-only and executable, filled with INT3, and
carves executable allocations out of them. The model gives a cache huge page (one area slot)
to one allocation of one page at a time, its first frame; the rest of the huge page stays
free in the cache, filled with INT3. That is enough for a partial permission change to
split the huge vmalloc mapping and the direct-map leaf behind it, and for set_memory_rox to
collapse them again; carving several allocations out of one huge page is left to placement
(issue 10).
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, action, call, product
from model.actions.bpf_pack import fill_cells
from model.actions.code import module_alloc
from model.actions.cpa import cpa_calls, set_memory_rox
from model.actions.vmalloc import area_free, vm_area_alloc, vunmap
from model.logic import Logic
from model.state import (
    CODE,
    OWN_BPF_JIT,
    OWN_FTRACE,
    OWN_KPROBES,
    OWN_MODULE,
    OWN_NONE,
    OWN_ROX_CACHE,
    PH_ALLOCATED,
    PH_LOCKED,
    PH_WRITTEN,
    RWC_FREED,
    RWC_LIVE,
    RWC_NONE,
    TRAP,
    ZERO,
    Oops,
    State,
    evolve,
)

Params = dict[str, Any]


def rox_cache(c: Ctx) -> bool:
    return c.flags.execmem == "rox_cache"


def cache_text(c: Ctx, area: int) -> range:
    """The page an allocation from the cache huge page in `area` gets: its first frame."""
    start = c.bounds.zone(area).start
    return range(start, start + 1)


def _cells(c: Ctx, frames: range) -> range:
    return range(frames.start * c.bounds.cells, frames.stop * c.bounds.cells)


def fill(s: State, frames: range, value: int, c: Ctx, L: Logic) -> State:
    return fill_cells(s, _cells(c, frames), value, L)


def _set(s: State, L: Logic, area: int, **fields: Any) -> State:
    a = s.areas
    return s.replace(areas=evolve(a, **{k: L.store(getattr(a, k), area, v) for k, v in fields.items()}))


def _is_cache(s: State, area: int, L: Logic) -> Any:
    return L.eq(s.areas.owner[area], OWN_ROX_CACHE)


def from_cache(s: State, area: int, c: Ctx, L: Logic) -> Any:
    """`area` is the cache huge page execmem_cache_alloc carves the next allocation from:
    the lowest free one (the cache's free areas are a maple tree searched in address order)."""
    return L.and_(_is_cache(s, area, L), L.not_(L.any_(_is_cache(s, a, L) for a in range(area))))


def cache_take(s: State, area: int, owner: int, L: Logic) -> State:
    """execmem_cache_alloc: the allocation moves from the free areas to the busy ones."""
    return _set(s, L, area, owner=owner, phase=PH_ALLOCATED, rw_copy=RWC_NONE)


def execmem_restore_rox(s: State, area: int, frames: range, fail: bool, c: Ctx,
                        L: Logic) -> tuple[State, Any]:
    """execmem_restore_rox (mm/execmem.c, 05e555b81726, 6.15): set_memory_rox on the range,
    which from 41d88484c71c collapses the large pages the range had split."""
    return set_memory_rox(s, area, frames, fail, c, L)


def execmem_force_rw(s: State, area: int, frames: range, fail: bool, c: Ctx,
                     L: Logic) -> tuple[State, Any]:
    """execmem_make_temp_rw / execmem_force_rw (mm/execmem.c, 05e555b81726, 6.15):
    set_memory_nx, then set_memory_rw on the range: RW+NX, splitting the huge mapping and
    the direct-map leaf the range covers only partly; no rollback. Returns (state, error)."""
    return cpa_calls(s, area, frames, fail, c, L, (None, False), (True, None))


def cache_free(s: State, area: int, fail: bool, c: Ctx, L: Logic) -> State:
    """execmem_free of an allocation from the cache -> execmem_cache_free: refill it with
    INT3 and return it to the free areas. 6.13-rc1 to 6.16 fill through text_poke
    (execmem_fill_trapping_insns(ptr, size, writable = false)); from 187fd8521dd8 (6.17)
    execmem_force_rw, a plain INT3 fill, then execmem_restore_rox."""
    text = cache_text(c, area)
    if c.flags.rox_cache_free != "rw_fill_rox":
        s = fill(s, text, TRAP, c, L)
        return _set(s, L, area, owner=OWN_ROX_CACHE, phase=PH_ALLOCATED, rw_copy=RWC_NONE)
    s, err = execmem_force_rw(s, area, text, fail, c, L)

    def back(t: State) -> State:
        t = fill(t, text, TRAP, c, L)
        t = execmem_restore_rox(t, area, text, fail, c, L)[0]
        return _set(t, L, area, owner=OWN_ROX_CACHE, phase=PH_ALLOCATED, rw_copy=RWC_NONE)

    # "If any step in the fast path fails, the entry in busy_areas will be marked as
    # pending_free": it stays allocated and the delayed work frees it again later
    return L.when(L.not_(err), s, back)


# ---- the cache itself ----------------------------------------------------------------


def _area_fail_domain(c: Ctx) -> list[Params]:
    return product(area=range(c.bounds.areas), fail=c.fail_choices) if rox_cache(c) else []


def _may_populate(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    # execmem_cache_alloc populates only when no free area fits
    return L.and_(area_free(s, p["area"], c.bounds.hpage, c, L),
                  L.not_(L.any_(_is_cache(s, a, L) for a in range(c.bounds.areas))))


@action("execmem", ("area", "fail"), _area_fail_domain, _may_populate,
        implicit=("area", "fail"), returns="area")
def execmem_cache_populate(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """execmem_cache_populate (mm/execmem.c, 2e45474ab14f, 6.13-rc1): vmalloc
    round_up(size, PMD_SIZE) PAGE_KERNEL with VM_ALLOW_HUGE_VMAP (no VM_FLUSH_RESET_PERMS),
    fill it with INT3; 6.13-rc1 then unmaps it, takes it out of the direct map
    (set_direct_map_valid_noflush(page, nr, false) per huge page) and maps it again
    PAGE_KERNEL_ROX at PMD level; from 925f42645118 (6.15) set_memory_rox instead, which
    keeps the direct-map alias (read-only)."""
    area, fail = p["area"], p["fail"]
    whole = c.bounds.zone(area)
    huge = c.flags.huge_vmalloc != "none"
    s = vm_area_alloc(s, area, c.bounds.hpage, OWN_ROX_CACHE, huge, False, c, L, content=TRAP)
    s = _set(s, L, area, cached=True)
    if c.flags.rox_cache_direct_map == "kept":
        return set_memory_rox(s, area, whole, fail, c, L)[0]
    # one huge page: the whole direct-map leaf at once, no split
    a, dm = s.areas, s.dmap
    pte_w, pte_x, present, dm_w = a.pte_w, a.pte_x, dm.present, dm.w
    for f in whole:
        pte_w, pte_x = L.store(pte_w, f, False), L.store(pte_x, f, True)
        present, dm_w = L.store(present, f, False), L.store(dm_w, f, False)
    return s.replace(areas=evolve(a, pte_w=pte_w, pte_x=pte_x),
                     dmap=evolve(dm, present=present, w=dm_w))


@action("execmem", ("area", "fail"), _area_fail_domain,
        lambda s, p, c, L: _is_cache(s, p["area"], L), implicit=("fail",))
def execmem_cache_clean(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """execmem_cache_clean (mm/execmem.c, 6.13-rc1 on), scheduled after a free: a cache huge
    page with nothing allocated in it gets its direct-map alias back
    (execmem_set_direct_map_valid(vm, true): present and RW, per huge page, error ignored)
    and is vfree'd."""
    area = p["area"]
    dm = s.dmap
    present, w = dm.present, dm.w
    for f in c.bounds.zone(area):
        present, w = L.store(present, f, True), L.store(w, f, True)
    s = s.replace(dmap=evolve(dm, present=present, w=w))
    return vunmap(s, area, c.bounds.hpage, c.flags.huge_vmalloc != "none", p["fail"], c, L)


# ---- the module loader on the cache (6.13-rc1 on) ---------------------------------------


def _area_domain(c: Ctx) -> list[Params]:
    return product(area=range(c.bounds.areas)) if rox_cache(c) else []


def _rox_module(phase: int):  # type: ignore[no-untyped-def]
    def guard(s: State, p: Params, c: Ctx, L: Logic) -> Any:
        a = p["area"]
        return L.and_(L.eq(s.areas.owner[a], OWN_MODULE), s.areas.cached[a],
                      L.eq(s.areas.phase[a], phase))

    return guard


@action("module", ("area", "fail"), _area_fail_domain,
        lambda s, p, c, L: from_cache(s, p["area"], c, L), implicit=("area", "fail"),
        returns="area")
def module_memory_alloc(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """module_memory_alloc (kernel/module/main.c, 6.13-rc1 on) of MOD_TEXT: execmem_alloc
    (EXECMEM_MODULE_TEXT) from the ROX cache, then move_module writes the text. 6.13-rc1
    (0c133b1e78cd) writes into mem->rw_copy, a vmalloc'ed writable copy, and relocates
    through module_writable_address; from c287c0723329 (6.15) execmem_make_temp_rw makes the
    text itself RW+NX, and the loader memsets and writes it in place."""
    area, fail = p["area"], p["fail"]
    s = cache_take(s, area, OWN_MODULE, L)
    if c.flags.rox_text_write != "temp_rw":
        return _set(s, L, area, rw_copy=RWC_LIVE, phase=PH_WRITTEN)
    text = cache_text(c, area)
    s, err = execmem_force_rw(s, area, text, fail, c, L)

    def write(t: State) -> State:
        t = fill(t, text, ZERO, c, L)
        return _set(fill(t, text, CODE, c, L), L, area, phase=PH_WRITTEN)

    # a failed execmem_make_temp_rw: execmem_free, the load fails with -ENOMEM
    return L.ite(err, cache_free(s, area, fail, c, L), write(s))


def _rw_copy_domain(c: Ctx) -> list[Params]:
    if not rox_cache(c) or c.flags.rox_text_write == "temp_rw":
        return []
    return product(area=range(c.bounds.areas))


@action("module", ("area",), _rw_copy_domain, _rox_module(PH_WRITTEN))
def post_relocation(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """post_relocation (kernel/module/main.c, 6.13-rc1 to 6.14): module_finalize, then
    execmem_update_copy(mem->base, mem->rw_copy, size) copies the text into the ROX cache
    with text_poke_copy, and "vfree(mem->rw_copy); mem->rw_copy = NULL;"."""
    area = p["area"]
    s = fill(s, cache_text(c, area), CODE, c, L)
    return _set(s, L, area, rw_copy=RWC_FREED, phase=PH_LOCKED)


def _temp_rw_domain(c: Ctx) -> list[Params]:
    if not rox_cache(c) or c.flags.rox_text_write != "temp_rw":
        return []
    return product(area=range(c.bounds.areas), fail=c.fail_choices)


@action("module", ("area", "fail"), _temp_rw_domain, _rox_module(PH_WRITTEN), implicit=("fail",))
def module_memory_restore_rox(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """module_memory_restore_rox (kernel/module/main.c, c287c0723329, 6.15) at the end of
    the load: execmem_restore_rox on each ROX module memory, set_memory_rox with collapse."""
    area = p["area"]
    s = execmem_restore_rox(s, area, cache_text(c, area), p["fail"], c, L)[0]
    return _set(s, L, area, phase=PH_LOCKED)


@action("livepatch", ("area",), _area_domain, _rox_module(PH_LOCKED))
def klp_apply_section_relocs(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """klp_apply_section_relocs (kernel/livepatch/core.c) of a loaded module ->
    apply_relocate_add (arch/x86/kernel/module.c): writes each relocation at
    module_writable_address(mod, loc), which 6.13-rc1 computes as
    loc + (mem->rw_copy - mem->base) for ROX memory even after post_relocation freed the
    copy; 4bcf29741145 returns loc once the module is formed, and the live module's text is
    written with text_poke."""
    area = p["area"]
    if c.flags.rox_text_write == "rw_copy":
        o = s.oops
        stale = L.or_(o.stale_alias, L.eq(s.areas.rw_copy[area], RWC_FREED))
        return s.replace(oops=Oops(o.invalid_alias, stale))
    return fill(s, cache_text(c, area), CODE, c, L)


@action("module", ("area", "fail"), _area_fail_domain, _rox_module(PH_LOCKED), implicit=("fail",))
def module_memory_free(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """free_module -> module_memory_free (kernel/module/main.c) -> execmem_free: text from
    the ROX cache goes back to it (execmem_cache_free)."""
    return cache_free(s, p["area"], p["fail"], c, L)


# ---- readers of the direct map --------------------------------------------------------


@action("proc", ("area",), _area_domain, lambda s, p, c, L: L.ne(s.areas.owner[p["area"]], OWN_NONE))
def read_kcore(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """read_kcore_iter (fs/proc/kcore.c) over a vmalloc'ed area -> vread_iter
    (mm/vmalloc.c, 6.4 on): vmalloc_to_page, then copy_page_to_iter_nofault from the page's
    direct-map address. Modelled where the ROX cache exists, the only place a live vmalloc
    page can lose its direct-map alias."""
    area = p["area"]
    b = c.bounds
    gone = L.any_(L.and_(L.lt(i, s.areas.npages[area]), L.not_(s.dmap.present[f]))
                  for i, f in enumerate(b.zone(area)))
    o = s.oops
    return s.replace(oops=Oops(L.or_(o.invalid_alias, gone), o.stale_alias))


# ---- execmem_alloc / execmem_free as callers make them (scenarios) -------------------------

# enum execmem_type (include/linux/execmem.h, 6.10) -> who the model says owns the memory
EXECMEM_TYPES = {"EXECMEM_MODULE_TEXT": OWN_MODULE, "EXECMEM_MODULE_DATA": OWN_MODULE,
                 "EXECMEM_KPROBES": OWN_KPROBES, "EXECMEM_FTRACE": OWN_FTRACE,
                 "EXECMEM_BPF": OWN_BPF_JIT}


def cached_type(c: Ctx, kind: str) -> bool:
    """Whether x86 serves `kind` from the ROX cache in this kernel."""
    if not rox_cache(c):
        return False
    if kind == "EXECMEM_MODULE_TEXT":
        return True
    return kind in ("EXECMEM_KPROBES", "EXECMEM_FTRACE") and \
        c.flags.rox_cache_users == "module_kprobes_ftrace"


def _execmem_domain(c: Ctx) -> list[Params]:
    return product(area=range(c.bounds.areas), type=EXECMEM_TYPES) if c.flags.execmem != "none" else []


def _execmem_room(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    if cached_type(c, p["type"]):
        return from_cache(s, p["area"], c, L)
    return area_free(s, p["area"], 1, c, L)


@call("execmem", ("area", "type"), _execmem_domain,
      ("no room: for a cached type no free huge page of the ROX cache (execmem_cache_populate "
       "first), else no vm area slot with free backing, or a lower one is free", _execmem_room),
      implicit=("area",), returns="area")
def execmem_alloc(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """execmem_alloc(type, PAGE_SIZE) (mm/execmem.c, 12af2b83d0b1, 6.10): a PAGE_KERNEL vmalloc
    in the type's range with VM_FLUSH_RESET_PERMS, nothing written; for the types x86 caches
    (module text from 6.13-rc1, kprobes and ftrace from 6.17) a page of the ROX cache,
    PAGE_KERNEL_ROX and filled with INT3."""
    owner = EXECMEM_TYPES[p["type"]]
    if cached_type(c, p["type"]):
        return cache_take(s, p["area"], owner, L)
    return module_alloc(s, p["area"], 1, owner, c, L)


def _free_domain(c: Ctx) -> list[Params]:
    if c.flags.execmem == "none":
        return []
    return product(addr=range(c.bounds.areas), fail=c.fail_choices)


@call("execmem", ("addr", "fail"), _free_domain,
      ("vm area {addr} is not from execmem_alloc: execmem_free would vfree a nonexistent area",
       lambda s, p, c, L: L.and_(L.ne(s.areas.owner[p["addr"]], OWN_NONE),
                                 L.ne(s.areas.owner[p["addr"]], OWN_ROX_CACHE))),
      implicit=("fail",))
def execmem_free(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """execmem_free(ptr) (mm/execmem.c, 6.10): WARN_ON(in_interrupt()); memory from the ROX
    cache goes back to it (execmem_cache_free), anything else is vfree'd, which resets the
    direct map (VM_FLUSH_RESET_PERMS)."""
    a, fail = p["addr"], p["fail"]
    if not rox_cache(c):
        return vunmap(s, a, 1, False, fail, c, L)
    return L.ite(s.areas.cached[a], cache_free(s, a, fail, c, L), vunmap(s, a, 1, False, fail, c, L))
