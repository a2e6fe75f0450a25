"""direct_map_integrity: the direct map stays sane.

Rick Edgecombe's concern about 5.18-rc1: change_page_attr keeps a huge vmalloc's
direct-map alias huge, so VM_FLUSH_RESET_PERMS at free time must split a direct-map leaf
to reset one 4 KiB page at a time; that split needs a page-table page, can fail, the
failure is ignored, and the page goes back to the page allocator with special
permissions. Also: the direct map is never executable, and an unsplit leaf (of the direct
map, or a huge vmalloc mapping, which 6.15's set_memory_rox collapses again) has one set
of permissions for all its frames.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import PG_FREE, State


def direct_map_integrity(s: State, c: Ctx, L: Logic) -> Any:
    dm, b = s.dmap, c.bounds
    terms = []
    for f in range(b.frames):
        terms.append(L.not_(L.and_(dm.present[f], dm.x[f])))
        default = L.and_(dm.present[f], dm.w[f], L.not_(dm.x[f]))
        terms.append(L.implies(L.eq(s.pages.kind[f], PG_FREE), default))
    for leaf in range(b.areas):
        z = b.zone(leaf)
        for f in z[1:]:
            same = L.and_(L.eq(dm.present[f], dm.present[z.start]), L.eq(dm.w[f], dm.w[z.start]),
                          L.eq(dm.x[f], dm.x[z.start]))
            terms.append(L.implies(L.not_(dm.split[leaf]), same))
    # the same for the kernel's other large leaves: a huge vmalloc mapping not split to
    # PTEs is one PMD with one set of permissions (what 6.15's collapse must keep true)
    a = s.areas
    for area in range(b.areas):
        z = b.zone(area)
        one_pmd = L.and_(a.huge[area], L.not_(a.vsplit[area]))
        for f in z[1:]:
            agree = L.and_(L.eq(a.pte_w[f], a.pte_w[z.start]), L.eq(a.pte_x[f], a.pte_x[z.start]))
            terms.append(L.implies(one_pmd, agree))
    return L.all_(terms)
