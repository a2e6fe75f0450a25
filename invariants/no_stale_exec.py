"""no_stale_exec: no freed program's code stays executable.

A pack outlives its programs. Until fe736565efb7 (5.19, bpf_arch_text_invalidate) a
freed program's chunks were only cleared in the bitmap: its code stayed mapped RO+X and
could still be jumped to. Module text and a per-program JIT image are live allocations
for as long as their area is; in a pack, only chunks a program holds are. Code in a frame
whose area was freed is stale too: before VM_FLUSH_RESET_PERMS (868b104d7379, 5.2) a
lazily flushed TLB entry kept a freed module's or JIT image's text executable.
"""

from __future__ import annotations

from typing import Any

from invariants.no_exec_uninit import executable
from model.actions.base import Ctx
from model.actions.bpf_pack import chunk_cells
from model.logic import Logic
from model.state import CODE, OWN_PACK, PROG_NONE, State


def no_stale_exec(s: State, c: Ctx, L: Logic) -> Any:
    b = c.bounds
    owner_of_cell: dict[int, list[Any]] = {}
    if c.flags.bpf_prog_pack:
        for a in range(b.areas):
            for k in range(b.chunks):
                taken = L.any_(
                    L.and_(L.ne(s.progs.state[p], PROG_NONE), L.eq(s.progs.area[p], a),
                           L.eq(s.progs.chunk[p], k))
                    for p in range(b.progs)
                )
                for cell in chunk_cells(c, a, k):
                    owner_of_cell.setdefault(cell, []).append(taken)
    terms = []
    for f in range(b.frames):
        area = f // b.hpage
        is_pack = L.eq(s.areas.owner[area], OWN_PACK)
        # the frame backs its area now (npages is 0 once the area is freed)
        backing = L.lt(f - b.zone(area).start, s.areas.npages[area])
        ex = executable(s, f, L)
        for cell in range(f * b.cells, (f + 1) * b.cells):
            # outside a pack, executable memory is a module or JIT image, live while allocated
            live = L.and_(backing, L.or_(L.not_(is_pack), L.any_(owner_of_cell.get(cell, []))))
            # never-written bytes are no_exec_uninit's business: here, code left behind
            terms.append(L.implies(L.and_(ex, L.not_(live)), L.ne(s.pages.content[cell], CODE)))
    return L.all_(terms)
