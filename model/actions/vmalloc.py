"""vmalloc and its opt-in callers (mm/vmalloc.c, mm/util.c, mm/page_alloc.c)."""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, action, product
from model.actions.cpa import set_direct_map
from model.actions.drivers import drivers_cleared
from model.actions.page_alloc import frames_free, free_vmalloc_pages, vmalloc_pages
from model.actions.tlb import vm_unmap_aliases
from model.logic import Logic
from model.state import (
    OWN_HASH,
    OWN_KVMALLOC,
    OWN_NONE,
    OWN_VMALLOC,
    PH_ALLOCATED,
    RWC_NONE,
    UNINIT,
    State,
    evolve,
)


def sizes(c: Ctx) -> tuple[int, ...]:
    """Allocation sizes in frames: one page, or one huge page (at least PMD_SIZE)."""
    return (1, c.bounds.hpage)


def buffer_sizes(c: Ctx) -> range:
    """Sizes of a plain vmalloc'ed buffer in frames: anything up to one huge page (a
    framebuffer of three pages, a ring of one); larger sizes are outside the scope."""
    return range(1, c.bounds.hpage + 1)


def is_huge(c: Ctx, npages: int, opt_in: bool = False, opt_out: bool = False) -> bool:
    """__vmalloc_node_range's choice of a PMD mapping: the arch supports huge vmalloc,
    the size is at least PMD_SIZE, and the version's flag rule allows it: default unless
    VM_NO_HUGE_VMAP (121e6f3258fe, 5.13) or only with VM_ALLOW_HUGE_VMAP (559089e0a93d)."""
    rule = c.flags.huge_vmalloc
    if npages < c.bounds.hpage or rule == "none":
        return False
    return (not opt_out) if rule == "opt_out" else opt_in


def vm_area_alloc(
    s: State,
    area: int,
    npages: int,
    owner: int,
    huge: bool,
    exec_: bool,
    c: Ctx,
    L: Logic,
    aligned: bool = True,
    content: int = UNINIT,
    usermap: bool = False,
) -> State:
    """__vmalloc_node_range (mm/vmalloc.c): reserve a vm area, allocate its backing
    (vm_area_alloc_pages) and map it with `prot`: PAGE_KERNEL (RW+NX) or, for
    module_alloc before 5.2, PAGE_KERNEL_EXEC (RW+X)."""
    frames = range(c.bounds.zone(area).start, c.bounds.zone(area).start + npages)
    s = vmalloc_pages(s, frames, huge, c, L, content)
    a = s.areas
    pte_w, pte_x = a.pte_w, a.pte_x
    for f in frames:
        pte_w = L.store(pte_w, f, True)
        pte_x = L.store(pte_x, f, exec_)
    return s.replace(areas=evolve(
        a,
        owner=L.store(a.owner, area, owner),
        npages=L.store(a.npages, area, npages),
        huge=L.store(a.huge, area, huge),
        vsplit=L.store(a.vsplit, area, False),
        flush_reset=L.store(a.flush_reset, area, False),
        usermap=L.store(a.usermap, area, usermap),
        aligned=L.store(a.aligned, area, aligned or huge or npages == 1),
        phase=L.store(a.phase, area, PH_ALLOCATED),
        pte_w=pte_w,
        pte_x=pte_x,
        cached=L.store(a.cached, area, False),
        rw_copy=L.store(a.rw_copy, area, RWC_NONE),
    ))


def area_free(s: State, area: int, npages: int, c: Ctx, L: Logic) -> Any:
    """`area` is where the allocator puts a new area of `npages`: the lowest slot that is
    unused and whose zone's frames are back in the page allocator.

    Slots are interchangeable (each owns an identical zone and direct-map leaf), so
    fixing the allocator's choice loses no behaviour up to renaming the slots, and it
    divides the branching of every allocation by up to the number of slots (symmetry
    reduction, as TLC's symmetry sets do)."""
    return L.and_(_usable(s, area, npages, c, L),
                  L.not_(L.any_(_usable(s, a, npages, c, L) for a in range(area))))


def _usable(s: State, area: int, npages: int, c: Ctx, L: Logic) -> Any:
    z = c.bounds.zone(area)
    return L.and_(L.eq(s.areas.owner[area], OWN_NONE),
                  frames_free(s, range(z.start, z.start + npages), L))


def area_is(s: State, area: int, npages: int, owner: int, L: Logic) -> Any:
    return L.and_(L.eq(s.areas.owner[area], owner), L.eq(s.areas.npages[area], npages))


def set_vm_flush_reset_perms(s: State, area: int, L: Logic) -> State:
    """set_vm_flush_reset_perms (include/linux/vmalloc.h, 5.2): mark the area
    VM_FLUSH_RESET_PERMS so that vfree restores the direct map before freeing pages."""
    return s.replace(areas=evolve(s.areas, flush_reset=L.store(s.areas.flush_reset, area, True)))


def vunmap(s: State, area: int, npages: int, huge: bool, fail: bool, c: Ctx, L: Logic) -> State:
    """vfree -> __vunmap (mm/vmalloc.c): remove the mapping, whose TLB entries stay until a
    lazy purge (an executable one is `tlb_x`); for VM_FLUSH_RESET_PERMS (vm_remove_mappings,
    5.2) set every page's direct-map alias invalid, flush once (_vm_unmap_aliases: the
    vmalloc alias and every lazily freed area), set the alias back to default, each
    set_direct_map_* error ignored; then free the pages."""
    b = c.bounds
    frames = range(b.zone(area).start, b.zone(area).start + npages)
    a = s.areas
    pte_w, pte_x, bitmap, tlb_x = a.pte_w, a.pte_x, a.bitmap, a.tlb_x
    for f in frames:
        tlb_x = L.store(tlb_x, f, L.or_(tlb_x[f], pte_x[f]))
        pte_w = L.store(pte_w, f, False)
        pte_x = L.store(pte_x, f, False)
    flush = a.flush_reset[area]
    s = s.replace(areas=evolve(
        a,
        owner=L.store(a.owner, area, OWN_NONE),
        npages=L.store(a.npages, area, 0),
        huge=L.store(a.huge, area, False),
        vsplit=L.store(a.vsplit, area, False),
        flush_reset=L.store(a.flush_reset, area, False),
        usermap=L.store(a.usermap, area, False),
        aligned=L.store(a.aligned, area, False),
        phase=L.store(a.phase, area, PH_ALLOCATED),
        pte_w=pte_w,
        pte_x=pte_x,
        tlb_x=tlb_x,
        bitmap=bitmap,
        cached=L.store(a.cached, area, False),
        rw_copy=L.store(a.rw_copy, area, RWC_NONE),
    ))
    # set_direct_map_* are x86's here (ARCH_HAS_SET_DIRECT_MAP); elsewhere the stubs
    direct_map = c.flags.set_memory

    def reset(t: State) -> State:
        if direct_map:
            for f in frames:
                t = set_direct_map(t, f, False, fail, c, L)
        if c.flags.flush_on_reset:
            t = vm_unmap_aliases(t, c, L)
        if direct_map:
            for f in frames:
                t = set_direct_map(t, f, True, fail, c, L)
        return t

    if direct_map or c.flags.flush_on_reset:
        s = L.when(flush, s, reset)
    return free_vmalloc_pages(s, frames, huge, c, L)


def _alloc_domain(c: Ctx) -> list[dict[str, Any]]:
    return product(area=range(c.bounds.areas), npages=buffer_sizes(c))


_free_domain = _alloc_domain


@action("vmalloc", ("area", "npages"), _alloc_domain,
        lambda s, p, c, L: area_free(s, p["area"], p["npages"], L=L, c=c),
        implicit=("area",), returns="area")
def vmalloc(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """vmalloc(size) (mm/vmalloc.c), as a driver's buffer such as the DRM fbdev shadow
    framebuffer: huge when the version's rule allows it without any flag (5.13 default,
    x86 from 5.18-rc1 until 559089e0a93d made huge opt-in in 5.18-rc4)."""
    huge = is_huge(c, p["npages"])
    return vm_area_alloc(s, p["area"], p["npages"], OWN_VMALLOC, huge, False, c, L)


@action("vmalloc", ("area", "npages"), _free_domain,
        lambda s, p, c, L: L.and_(area_is(s, p["area"], p["npages"], OWN_VMALLOC, L),
                                  drivers_cleared(s, c.bounds.zone(p["area"]), c, L)))
def vfree(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """vfree(addr) (mm/vmalloc.c) of a driver's buffer: unmap, then __free_pages each
    backing block; a page a driver still holds a reference on stays allocated."""
    return vunmap(s, p["area"], p["npages"], is_huge(c, p["npages"]), False, c, L)


@action("vmalloc", ("area", "npages"), _alloc_domain,
        lambda s, p, c, L: area_free(s, p["area"], p["npages"], L=L, c=c),
        implicit=("area",), returns="area")
def kvmalloc(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """kvmalloc_node (mm/util.c) falling back to vmalloc: opts in to huge mappings with
    VM_ALLOW_HUGE_VMAP from 9becb6889130 (5.18-rc4): its callers "cannot play protection
    games" and never treat its pages as base pages."""
    huge = is_huge(c, p["npages"], opt_in=c.flags.kvmalloc_huge)
    return vm_area_alloc(s, p["area"], p["npages"], OWN_KVMALLOC, huge, False, c, L)


@action("vmalloc", ("area", "npages"), _free_domain,
        lambda s, p, c, L: area_is(s, p["area"], p["npages"], OWN_KVMALLOC, L))
def kvfree(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """kvfree (mm/util.c) of vmalloc'ed memory: vfree."""
    huge = is_huge(c, p["npages"], opt_in=c.flags.kvmalloc_huge)
    return vunmap(s, p["area"], p["npages"], huge, False, c, L)


@action("vmalloc", ("area",), lambda c: product(area=range(c.bounds.areas)),
        lambda s, p, c, L: L.and_(area_free(s, p["area"], c.bounds.hpage, L=L, c=c),
                                  L.all_(L.ne(o, OWN_HASH) for o in s.areas.owner)),
        implicit=("area",), returns="area")
def alloc_large_system_hash(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """alloc_large_system_hash (mm/page_alloc.c) with HASH_EARLY unset: a boot-time
    __vmalloc of a large table, never freed; opts in to huge with VM_ALLOW_HUGE_VMAP
    from f2edd118d02d (5.18-rc4). One table is enough to show the rule."""
    huge = is_huge(c, c.bounds.hpage, opt_in=c.flags.hash_huge)
    return vm_area_alloc(s, p["area"], c.bounds.hpage, OWN_HASH, huge, False, c, L)

