"""no_leak: every page out of the page allocator belongs to someone.

A frame that is not free must back a live vm area, be mapped to user space, be held through
a counted driver pointer, or be part of a block whose first page is one of those (a
compound page's tails; the rest of a high-order block without __GFP_COMP, split or not). A page
nobody owns is never freed: 5.18-rc1's fbdev deferred I/O leaks the head's reference when
munmap's put_page lands on a detached tail ("the head's reference leaks"). Pages the
free-time checks reported ("BUG: Bad page state") are leaked on purpose, and reported
already: they count as owned.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import BAD_NONE, OWN_NONE, PG_FREE, PG_TAIL, State


def _owns(s: State, f: int, c: Ctx, L: Logic) -> Any:
    """Frame `f` itself is accounted for: backing an area, or held, mapped to user space or
    reported, directly or, for a compound head, through one of its tails (get_page and the
    fault path take the reference on compound_head())."""
    b = c.bounds
    area = f // b.hpage
    zone = b.zone(area)
    backs = L.and_(L.ne(s.areas.owner[area], OWN_NONE), L.lt(f % b.hpage, s.areas.npages[area]))
    on = [f] + ([t for t in zone if t != f] if f == zone.start else [])
    claims = []
    for t in on:
        # a page the free-time checks reported stays out of the buddy allocator, with its
        # whole compound page: free_pages_prepare returns false for the head
        used = L.or_(L.lt(0, s.pages.mapcount[t]), L.ne(s.pages.bad[t], BAD_NONE),
                     L.any_(L.and_(s.refs.held[r], s.refs.counted[r], L.eq(s.refs.frame[r], t))
                            for r in range(b.refs)))
        claims.append(used if t == f else L.and_(L.eq(s.pages.kind[t], PG_TAIL), used))
    return L.or_(backs, L.any_(claims))


def no_leak(s: State, c: Ctx, L: Logic) -> Any:
    p, b = s.pages, c.bounds
    terms = []
    for f in range(b.frames):
        zone = b.zone(f // b.hpage)
        # the rest of a block belongs to whoever owns its first page: a compound page's
        # tails, the uncounted rest of a block without __GFP_COMP, the pages split_page
        # cut from it; the model does not record block orders, so any owned page before
        # it in its zone with no free page between them will do
        through: Any = False
        for g in (g for g in zone if g < f):  # ascending: a free page cuts the chain
            through = L.and_(L.ne(p.kind[g], PG_FREE), L.or_(_owns(s, g, c, L), through))
        terms.append(L.implies(L.ne(p.kind[f], PG_FREE), L.or_(_owns(s, f, c, L), through)))
    return L.all_(terms)
