"""no_tail_as_base: memmap integrity of compound pages.

5.18-rc1 made x86 vmalloc hand out order-9 compound pages. The DRM fbdev emulation
vmalloc'ed a >2 MiB shadow framebuffer, deferred I/O took its pages with
vmalloc_to_page() and wrote ->mapping, ->index and ->lru as on base pages; on vfree,
free_tail_pages_check found "corrupted mapping in tail page". Compound-aware calls on a
tail (get_page, put_page, vm_insert_page) are correct and must not be flagged: the bug is
a raw write of a field a tail does not own, or a tail's own refcount moving; and, as
the crash was reported, free_tail_pages_check finding a tail that no longer looks like
one when its compound page is freed.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import BAD_TAIL_REASONS, PG_HEAD, PG_TAIL, TAIL_MAPPING, State


def no_tail_as_base(s: State, c: Ctx, L: Logic) -> Any:
    p = s.pages
    terms = []
    for f in range(c.bounds.frames):
        head = f - f % c.bounds.hpage
        intact = L.and_(
            L.eq(p.refcount[f], 0),
            L.eq(p.mapping[f], TAIL_MAPPING),
            L.not_(p.lru[f]),
            L.not_(p.index[f]),
            L.not_(p.private[f]),
            L.eq(p.kind[head], PG_HEAD) if head != f else False,
        )
        terms.append(L.implies(L.eq(p.kind[f], PG_TAIL), intact))
        # "BUG: Bad page state ... corrupted mapping in tail page" and its siblings
        terms.append(L.all_(L.ne(p.bad[f], r) for r in BAD_TAIL_REASONS))
    return L.all_(terms)
