"""no_exec_uninit: nothing executable holds memory nobody initialised.

bpf_prog_pack in 5.18-rc1 and 5.18 made each new pack RO+X straight after
module_alloc: Torvalds, "it ... just marks it executable without having even initialized
the pages ... random kernel memory that is marked executable". d88bb5eed04c (5.19)
fills a new pack with illegal instructions first. Zero counts as initialised: the
module loader's memset is what Torvalds asked for, "(a) that zeroing".
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import UNINIT, State


def executable(s: State, f: int, L: Logic) -> Any:
    """Frame `f` can be executed through some kernel mapping (vmalloc or direct map), or
    through a TLB entry a lazily unmapped vmalloc alias left behind."""
    return L.or_(s.areas.pte_x[f], L.and_(s.dmap.present[f], s.dmap.x[f]), s.areas.tlb_x[f])


def no_exec_uninit(s: State, c: Ctx, L: Logic) -> Any:
    cells = c.bounds.cells
    terms = []
    for f in range(c.bounds.frames):
        init = L.all_(L.ne(s.pages.content[k], UNINIT) for k in range(f * cells, (f + 1) * cells))
        terms.append(L.implies(executable(s, f, L), init))
    return L.all_(terms)
