"""no_stale_alias: no writable alias of executable text outlives the write it was made for.

6.13-rc1 wrote module text into a vmalloc'ed copy, mem->rw_copy, and post_relocation
freed it ("vfree(mem->rw_copy); mem->rw_copy = NULL;"); module_writable_address still
computed `loc + (mem->rw_copy - mem->base)`, and livepatch wrote its relocations there:
"BUG: unable to handle page fault for address: 00000000000012ba" (Marek Maslanka; fix
4bcf29741145). 6.15 writes through a temporary RW mapping of the text itself
(execmem_make_temp_rw) instead; that mapping must be gone (execmem_restore_rox) once the
loader has finished writing.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import PH_LOCKED, State


def no_stale_alias(s: State, c: Ctx, L: Logic) -> Any:
    b, a = c.bounds, s.areas
    terms = []
    terms.append(L.not_(s.oops.stale_alias))
    for area in range(b.areas):
        text = b.zone(area).start  # a cache allocation's page (model.actions.execmem)
        done = L.and_(a.cached[area], L.eq(a.phase[area], PH_LOCKED))
        terms.append(L.implies(done, L.not_(a.pte_w[text])))
    return L.all_(terms)
