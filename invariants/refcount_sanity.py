"""refcount_sanity: no use after free, no free while mapped.

A page back in the page allocator has refcount 0, no mappings and no owner's fields; a
vmalloc area's backing pages stay allocated while it is mapped; a driver that took a
reference points at an allocated page. fbdev deferred I/O pins the pages it hands to user
space with get_page: without that, a write after vfree lands on a free page.

No refcount or mapcount leaves its range: a put_page below zero is an underflow (the
kernel's VM_BUG_ON_PAGE(page_ref_zero_or_close_to_overflow) in debug builds, a use after
free otherwise). And the page allocator's own free-time check (check_free_page:
_mapcount, ->mapping, _refcount) never reports a page ("BUG: Bad page state").
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import (
    BAD_MAPCOUNT,
    BAD_MAPPING,
    BAD_REF_ZERO,
    BAD_REFCOUNT,
    MAPPING_NULL,
    OWN_NONE,
    PG_FREE,
    State,
)


def refcount_sanity(s: State, c: Ctx, L: Logic) -> Any:
    p, b = s.pages, c.bounds
    terms = []
    for f in range(b.frames):
        for counter in (p.refcount[f], p.mapcount[f]):
            # two comparisons: concretely an underflow is -1, symbolically it wraps to 2**WIDTH-1
            terms.append(L.and_(L.le(0, counter), L.le(counter, b.max_ref)))
        terms.append(L.all_(L.ne(p.bad[f], r)
                            for r in (BAD_MAPCOUNT, BAD_MAPPING, BAD_REFCOUNT, BAD_REF_ZERO)))
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
