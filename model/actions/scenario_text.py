"""Executable memory as its callers really use it: set_memory_* in any order on any area,
VM_FLUSH_RESET_PERMS as a step, and writes through the kernel mapping or text_poke
(arch/x86/mm/pat/set_memory.c, include/linux/vmalloc.h, arch/x86/kernel/alternative.c,
5.17 unless named).

Only scenarios make these calls. The W^X protocol (write, then RO, then X; write text only
through text_poke) is not a guard here: breaking it is expressible and the invariants
catch it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model.actions.base import Ctx, call, product
from model.actions.cpa import change_page_attr
from model.actions.cpa import set_memory_rox as cpa_set_memory_rox
from model.actions.scenario_vmalloc import allocated
from model.actions.tlb import vm_unmap_aliases
from model.actions.vmalloc import set_vm_flush_reset_perms as set_flush_flag
from model.logic import Logic
from model.state import CODE, TRAP, ZERO, State, evolve

Params = dict[str, Any]


def _cpa_domain(c: Ctx) -> list[Params]:
    return product(addr=range(c.bounds.areas), numpages=range(1, c.bounds.hpage + 1),
                   fail=c.fail_choices)


CPA_CHECKS = (
    allocated("CPA finds no mapping (-EFAULT)"),
    ("the range runs past the area's last page: CPA finds no mapping (-EFAULT)",
     lambda s, p, c, L: L.le(p["numpages"], s.areas.npages[p["addr"]])),
)


def numpages_at(c: Ctx, p: Params) -> range:
    """The frames of set_memory_*(addr, numpages): `numpages` from the area's start."""
    start = c.bounds.zone(p["addr"]).start
    return range(start, start + p["numpages"])


def _cpa(w: bool | None, x: bool | None) -> Callable[[State, Params, Ctx, Logic], State]:
    def effect(s: State, p: Params, c: Ctx, L: Logic) -> State:
        frames = numpages_at(c, p)
        # the callers of these years ignore the error (the 6.9/6.10 error handling is later)
        return change_page_attr(s, p["addr"], frames, w, x, p["fail"], c, L)[0]

    return effect


@call("cpa", ("addr", "numpages", "fail"), _cpa_domain, *CPA_CHECKS, implicit=("fail",))
def set_memory_ro(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_memory_ro(addr, numpages) (arch/x86/mm/pat/set_memory.c, 5.17): clear _PAGE_RW on
    the vmalloc PTEs and, through cpa_process_alias, on the direct-map alias; a partial
    change of a huge leaf splits it, and a split may fail with -ENOMEM."""
    return _cpa(False, None)(s, p, c, L)


@call("cpa", ("addr", "numpages", "fail"), _cpa_domain, *CPA_CHECKS, implicit=("fail",))
def set_memory_rw(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_memory_rw(addr, numpages) (arch/x86/mm/pat/set_memory.c, 5.17): set _PAGE_RW on
    the vmalloc PTEs and the direct-map alias."""
    return _cpa(True, None)(s, p, c, L)


@call("cpa", ("addr", "numpages", "fail"), _cpa_domain, *CPA_CHECKS, implicit=("fail",))
def set_memory_x(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_memory_x(addr, numpages) (arch/x86/mm/pat/set_memory.c, 5.17): clear _PAGE_NX on
    the vmalloc PTEs only ("No alias checking for _NX bit modifications")."""
    return _cpa(None, True)(s, p, c, L)


@call("cpa", ("addr", "numpages", "fail"), _cpa_domain, *CPA_CHECKS, implicit=("fail",))
def set_memory_nx(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_memory_nx(addr, numpages) (arch/x86/mm/pat/set_memory.c, 5.17): set _PAGE_NX on
    the vmalloc PTEs only."""
    return _cpa(None, False)(s, p, c, L)


@call("cpa", ("addr", "numpages", "fail"),
      # set_memory_rox arrived with d48567c9a0d1 (6.2)
      lambda c: _cpa_domain(c) if c.flags.set_memory_rox else [], *CPA_CHECKS, implicit=("fail",))
def set_memory_rox(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_memory_rox(addr, numpages) (arch/x86/mm/pat/set_memory.c, 60463628c9e0, 6.2): one
    CPA pass clearing _PAGE_RW and _PAGE_NX; the alias loses _PAGE_RW only (d597416683d5);
    from 41d88484c71c (6.15) it collapses split large pages."""
    return cpa_set_memory_rox(s, p["addr"], numpages_at(c, p), p["fail"], c, L)[0]


def _addr_domain(c: Ctx) -> list[Params]:
    return product(addr=range(c.bounds.areas))


def _has_flush_reset(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return c.flags.flush_reset_perms


@call("vmalloc", ("addr",), _addr_domain,
      ("set_vm_flush_reset_perms does not exist before 5.2 (868b104d7379)", _has_flush_reset),
      allocated("find_vm_area returns NULL, a NULL dereference"))
def set_vm_flush_reset_perms(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_vm_flush_reset_perms(addr) (include/linux/vmalloc.h, 5.2 on): mark the area
    VM_FLUSH_RESET_PERMS, so that vfree resets its direct-map alias before freeing pages."""
    return set_flush_flag(s, p["addr"], L)


@call("vmalloc", (), lambda c: [{}], name="vm_unmap_aliases")
def vm_unmap_aliases_call(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """vm_unmap_aliases() (mm/vmalloc.c, 5.1 on): purge every lazily freed vmap area and
    flush the TLB over them, as purge_vmap_area_lazy does on its own once lazy_max_pages()
    is passed. Not a built-in step: it only clears stale entries, which no guard reads and
    every invariant reads monotonically, so leaving it out changes no verdict or depth."""
    return vm_unmap_aliases(s, c, L)


# ---- writing into an area -------------------------------------------------------------


def _fill(s: State, a: int, value: int, c: Ctx, L: Logic) -> State:
    b = c.bounds
    cont = s.pages.content
    for i, f in enumerate(b.zone(a)):
        inside = L.lt(i, s.areas.npages[a])
        for k in range(f * b.cells, (f + 1) * b.cells):
            cont = L.store(cont, k, L.ite(inside, value, cont[k]))
    return s.replace(pages=evolve(s.pages, content=cont))


def _writable(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    a = p["addr"]
    return L.all_(L.implies(L.lt(i, s.areas.npages[a]), s.areas.pte_w[f])
                  for i, f in enumerate(c.bounds.zone(a)))


WRITABLE = ("the kernel mapping of `addr` is read-only: the write would fault (oops)", _writable)


@call("write", ("addr",), _addr_domain, allocated("the write faults on an unmapped address (oops)"),
      WRITABLE)
def memcpy(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """memcpy(addr, code, size) through the kernel's own mapping (move_module,
    kernel/module.c; create_trampoline, arch/x86/kernel/ftrace.c, 5.17): code lands in
    every page of the area."""
    return _fill(s, p["addr"], CODE, c, L)


@call("write", ("addr",), _addr_domain, allocated("the write faults on an unmapped address (oops)"),
      WRITABLE)
def memset(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """memset(addr, 0, size) through the kernel's own mapping (move_module zeroes the
    image, kernel/module.c, 5.17)."""
    return _fill(s, p["addr"], ZERO, c, L)


@call("write", ("addr",), _addr_domain, allocated("the write faults on an unmapped address (oops)"),
      WRITABLE)
def bpf_fill_ill_insns(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """jit_fill_hole / bpf_fill_ill_insns(area, size) (arch/x86/net/bpf_jit_comp.c, 5.17):
    INT3 over the whole area through the kernel mapping."""
    return _fill(s, p["addr"], TRAP, c, L)


@call("write", ("addr",), _addr_domain, allocated("text_poke finds no page behind it (oops)"))
def text_poke(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """text_poke(addr, code, len) (arch/x86/kernel/alternative.c, 5.17; text_poke_copy for
    whole programs from 5.18): write through a temporary mm local to one CPU, whatever the
    kernel mapping's permissions."""
    return _fill(s, p["addr"], CODE, c, L)
