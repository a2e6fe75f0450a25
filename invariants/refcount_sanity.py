"""refcount_sanity: no use after free, no free while mapped.

A page back in the page allocator has refcount 0, no mappings and no owner's fields; a
vmalloc area's backing pages stay allocated while it is mapped; a driver that took a
reference points at an allocated page. fbdev deferred I/O pins the pages it hands to user
space with get_page: without that, a write after vfree lands on a free page.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import MAPPING_NULL, OWN_NONE, PG_FREE, State


def refcount_sanity(s: State, c: Ctx, L: Logic) -> Any:
    p, b = s.pages, c.bounds
    terms = []
    for f in range(b.frames):
        free = L.eq(p.kind[f], PG_FREE)
        terms.append(L.implies(free, L.and_(L.eq(p.refcount[f], 0), L.eq(p.mapcount[f], 0),
                                            L.eq(p.mapping[f], MAPPING_NULL))))
        area = f // b.hpage
        mapped = L.and_(L.ne(s.areas.owner[area], OWN_NONE), L.lt(f % b.hpage, s.areas.npages[area]))
        terms.append(L.implies(mapped, L.not_(free)))
    for r in range(b.refs):
        for f in range(b.frames):
            at = L.and_(s.refs.held[r], s.refs.counted[r], L.eq(s.refs.frame[r], f))
            terms.append(L.implies(at, L.not_(L.eq(p.kind[f], PG_FREE))))
    return L.all_(terms)
