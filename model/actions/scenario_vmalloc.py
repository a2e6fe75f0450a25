"""vmalloc as its callers use it: the allocation variants with their caller-visible flags,
freeing any vm area, page lookups and user mappings of a whole area (mm/vmalloc.c,
mm/util.c, arch/x86/kernel/module.c; 5.17 unless named).

Only scenarios make these calls. An area is named by its slot (`addr`); which frames back
it and how it is mapped is state.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, call, lowest_free, product
from model.actions.code import module_alloc as module_alloc_area
from model.actions.drivers import set_ref
from model.actions.page_alloc import page_add_rmap, page_remove_rmap
from model.actions.vmalloc import area_free, buffer_sizes, is_huge, vm_area_alloc, vunmap
from model.logic import Logic
from model.state import OWN_MODULE, OWN_NONE, OWN_VMALLOC, UNINIT, ZERO, State

Params = dict[str, Any]

VM_FLAGS = (0, "VM_NO_HUGE_VMAP", "VM_ALLOW_HUGE_VMAP")
PROTS = ("PAGE_KERNEL", "PAGE_KERNEL_EXEC")


def _alloc_domain(c: Ctx) -> list[Params]:
    return product(area=range(c.bounds.areas), npages=buffer_sizes(c))


AREA_FREE = ("no vm area slot with free backing is left (bound areas): vmalloc returns NULL",
             lambda s, p, c, L: area_free(s, p["area"], p["npages"], c, L))


@call("vmalloc", ("area", "npages"), _alloc_domain, AREA_FREE, implicit=("area",), returns="area")
def vzalloc(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """vzalloc(size) (mm/vmalloc.c, 5.17): vmalloc with __GFP_ZERO; huge under the same rule
    as vmalloc (by default until 5.18-rc4, never after without VM_ALLOW_HUGE_VMAP)."""
    return vm_area_alloc(s, p["area"], p["npages"], OWN_VMALLOC, is_huge(c, p["npages"]), False,
                         c, L, content=ZERO)


@call("vmalloc", ("area", "npages"), _alloc_domain, AREA_FREE, implicit=("area",), returns="area")
def vmalloc_user(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """vmalloc_user(size) (mm/vmalloc.c, 5.17): __vmalloc_node_range(..., GFP_KERNEL |
    __GFP_ZERO, PAGE_KERNEL, VM_USERMAP, ...): zeroed, and remap_vmalloc_range may map it."""
    return vm_area_alloc(s, p["area"], p["npages"], OWN_VMALLOC, is_huge(c, p["npages"]), False,
                         c, L, content=ZERO, usermap=True)


def _range_domain(c: Ctx) -> list[Params]:
    return product(area=range(c.bounds.areas), npages=buffer_sizes(c), vm_flags=VM_FLAGS, prot=PROTS)


def _flag_exists(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    rule = c.flags.huge_vmalloc
    if p["vm_flags"] == "VM_ALLOW_HUGE_VMAP":
        return rule == "opt_in"
    if p["vm_flags"] == "VM_NO_HUGE_VMAP":
        return rule != "opt_in"
    return True


@call("vmalloc", ("area", "npages", "vm_flags", "prot"), _range_domain,
      ("{vm_flags} does not exist in this kernel: VM_NO_HUGE_VMAP until 5.18-rc4, "
       "VM_ALLOW_HUGE_VMAP from 559089e0a93d (5.18-rc4)", _flag_exists),
      AREA_FREE, implicit=("area",), returns="area")
def __vmalloc_node_range(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """__vmalloc_node_range(size, ..., prot, vm_flags, ...) (mm/vmalloc.c): map with PMD
    leaves when the arch allows and the size is at least PMD_SIZE, unless VM_NO_HUGE_VMAP
    (5.13 to 5.18-rc3), only with VM_ALLOW_HUGE_VMAP (5.18-rc4 on); prot PAGE_KERNEL_EXEC
    maps it writable and executable at once."""
    huge = is_huge(c, p["npages"], opt_in=p["vm_flags"] == "VM_ALLOW_HUGE_VMAP",
                   opt_out=p["vm_flags"] == "VM_NO_HUGE_VMAP")
    return vm_area_alloc(s, p["area"], p["npages"], OWN_VMALLOC, huge, p["prot"] == "PAGE_KERNEL_EXEC",
                         c, L)


@call("module", ("area", "npages"),
      # from 6.10 execmem_alloc replaced it (12af2b83d0b1)
      lambda c: _alloc_domain(c) if c.flags.execmem == "none" else [],
      AREA_FREE, implicit=("area",), returns="area")
def module_alloc(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """module_alloc(size) (arch/x86/kernel/module.c): vmalloc in the module area,
    PAGE_KERNEL_EXEC before f2c65fb3221a (5.2), PAGE_KERNEL after; nothing written yet and
    no VM_FLUSH_RESET_PERMS unless the caller sets it."""
    return module_alloc_area(s, p["area"], p["npages"], OWN_MODULE, c, L, content=UNINIT)


# ---- freeing any vm area --------------------------------------------------------------


def _addr_domain(c: Ctx) -> list[Params]:
    return product(addr=range(c.bounds.areas), fail=c.fail_choices)


def allocated(consequence: str) -> tuple[str, Any]:
    """The check that `addr` names a live vm area, with what the kernel does otherwise."""
    return (f"vm area {{addr}} is not allocated: {consequence}",
            lambda s, p, c, L: L.ne(s.areas.owner[p["addr"]], OWN_NONE))


ALLOCATED = allocated("vfree would hit \"Trying to vfree() nonexistent vm area\"")


def _unmap(s: State, p: Params, c: Ctx, L: Logic) -> State:
    a = p["addr"]

    def sized(n: int) -> State:
        small = vunmap(s, a, n, False, p["fail"], c, L)
        if n < c.bounds.hpage:
            return small
        # a huge mapping's backing may be compound, freed by its head alone
        return L.ite(s.areas.huge[a], vunmap(s, a, n, True, p["fail"], c, L), small)

    return L.case(s.areas.npages[a], list(buffer_sizes(c)), sized)


@call("vmalloc", ("addr", "fail"), _addr_domain, ALLOCATED, implicit=("fail",))
def vfree(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """vfree(addr) (mm/vmalloc.c, 5.17) of any vm area: remove the mapping; for
    VM_FLUSH_RESET_PERMS the direct-map alias invalid, flush, default (errors ignored);
    then __free_pages on every backing block, which drops vmalloc's reference only."""
    return _unmap(s, p, c, L)


@call("vmalloc", ("addr", "fail"), _addr_domain, ALLOCATED, implicit=("fail",))
def kvfree(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """kvfree(addr) (mm/util.c, 5.17): vfree for vmalloc'ed memory."""
    return _unmap(s, p, c, L)


@call("module", ("addr", "fail"), _addr_domain, ALLOCATED, implicit=("fail",))
def module_memfree(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """module_memfree(addr) (kernel/module.c, 5.17): vfree; restores nothing by itself
    unless the area is VM_FLUSH_RESET_PERMS."""
    return _unmap(s, p, c, L)


# ---- page lookups and user mappings of an area --------------------------------------


def _lookup_domain(c: Ctx) -> list[Params]:
    return product(page=range(c.bounds.refs), addr=range(c.bounds.areas), index=range(c.bounds.hpage))


@call("vmalloc", ("page", "addr", "index"), _lookup_domain,
      ("all driver page pointers are in use (bound refs)",
       lambda s, p, c, L: lowest_free(p["page"], lambda j: L.not_(s.refs.held[j]), L)),
      allocated("no page table maps it, vmalloc_to_page returns NULL"),
      ("index {index} lies beyond the area: vmalloc_to_page returns NULL",
       lambda s, p, c, L: L.lt(p["index"], s.areas.npages[p["addr"]])),
      implicit=("page",), returns="page")
def vmalloc_to_page(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """vmalloc_to_page(addr + index * PAGE_SIZE) (mm/vmalloc.c, 5.17): walk the page tables
    to the 4 KiB struct page, a tail page inside a compound block under a PMD mapping. No
    reference is taken."""
    f = c.bounds.zone(p["addr"]).start + p["index"]
    return set_ref(s, p["page"], L, held=True, frame=f, counted=False, mapped=False)


def _area_domain(c: Ctx) -> list[Params]:
    return product(addr=range(c.bounds.areas))


def _frames(c: Ctx, a: int) -> range:
    return c.bounds.zone(a)


def _mapped(s: State, a: int, f: int, c: Ctx, L: Logic) -> Any:
    return L.lt(f - c.bounds.zone(a).start, s.areas.npages[a])


@call("vmalloc", ("addr",), _area_domain, allocated("remap_vmalloc_range finds no vm area (-EINVAL)"),
      ("remap_vmalloc_range: the area is not VM_USERMAP (returns -EINVAL)",
       lambda s, p, c, L: s.areas.usermap[p["addr"]]),
      ("the model's refcount bound max_ref is reached (not a kernel limit)",
       lambda s, p, c, L: _within_bound(_insert_all(s, p["addr"], c, L), p["addr"], c, L)))
def remap_vmalloc_range(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """remap_vmalloc_range(vma, addr, pgoff) (mm/vmalloc.c, 5.17): vm_insert_page of every
    page of a VM_USERMAP area into a user VMA (videobuf2-vmalloc, the BPF ring buffer):
    get_page on compound_head and each page's own _mapcount."""
    return _insert_all(s, p["addr"], c, L)


def _insert_all(s: State, a: int, c: Ctx, L: Logic) -> State:
    for f in _frames(c, a):
        s = L.when(_mapped(s, a, f, c, L), s, lambda t, f=f: page_add_rmap(t, f, c, L))
    return s


def _within_bound(s: State, a: int, c: Ctx, L: Logic) -> Any:
    """Every count the call raised stays within the model's bound: each tail's
    get_page lands on the head, so the head's count grows by the area's size."""
    head = c.bounds.zone(a).start
    return L.all_(L.and_(L.le(s.pages.refcount[f], c.bounds.max_ref),
                         L.le(s.pages.mapcount[f], c.bounds.max_ref))
                  for f in range(head, head + c.bounds.hpage))


@call("vmalloc", ("addr",), _area_domain, allocated("there is nothing to unmap"),
      ("nothing to unmap: no page of the area is mapped to user space",
       lambda s, p, c, L: L.any_(L.and_(_mapped(s, p["addr"], f, c, L), L.lt(0, s.pages.mapcount[f]))
                                 for f in _frames(c, p["addr"]))))
def zap_vma_ptes(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """zap_vma_ptes(vma, addr, size) (mm/memory.c, 5.17) over a VMA remap_vmalloc_range
    filled (munmap does the same): page_remove_rmap and put_page for each mapped page."""
    a = p["addr"]
    for f in _frames(c, a):
        mapped = L.and_(_mapped(s, a, f, c, L), L.lt(0, s.pages.mapcount[f]))
        s = L.when(mapped, s, lambda t, f=f: page_remove_rmap(t, f, c, L))
    return s
