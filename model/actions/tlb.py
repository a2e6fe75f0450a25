"""The TLB flushes of kernel mappings that the invariants depend on (mm/vmalloc.c).

vfree clears an area's PTEs at once but flushes the TLB lazily (free_vmap_area_noflush),
while its pages go back to the page allocator at once: "an executable permissioned TLB
entry can remain to a freed page ... The root of this behavior is vfree lazily flushing
the TLB, but not lazily freeing the underlying pages" (Rick Edgecombe, the cover letter of
the series that added VM_FLUSH_RESET_PERMS, 868b104d7379, 5.2). Only executable entries
are state here: they are what the series closed. A stale writable entry to a freed page is
what the kernel accepts (nothing writes through an address it has freed).
"""

from __future__ import annotations

from model.actions.base import Ctx
from model.logic import Logic
from model.state import State, evolve


def vm_unmap_aliases(s: State, c: Ctx, L: Logic) -> State:
    """vm_unmap_aliases / _vm_unmap_aliases (mm/vmalloc.c, 5.1 on): purge every lazily
    freed vmap area and flush the TLB over them; no stale entry survives."""
    a = s.areas
    return s.replace(areas=evolve(a, tlb_x=(False,) * c.bounds.frames))
