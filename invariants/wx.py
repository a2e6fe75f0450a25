"""wx: W^X, across every kernel alias of a frame.

Before 5.2 x86 module_alloc mapped PAGE_KERNEL_EXEC: writable and executable at once.
f2c65fb3221a made it PAGE_KERNEL and the order RO first, then X, "to avoid one core in
which the old PTE is cached (writable) and another which sees the updated PTE
(executable)". A frame must also not be executable through vmalloc while writable
through the direct map: set_memory_ro changes the alias too (cpa_process_alias). The one
sanctioned writer of RO+X text is text_poke's temporary mm, which the model does not
count as a kernel mapping because it is local to one CPU and torn down after the copy.
"""

from __future__ import annotations

from typing import Any

from invariants.no_exec_uninit import executable
from model.actions.base import Ctx
from model.logic import Logic
from model.state import State


def writable(s: State, f: int, L: Logic) -> Any:
    return L.or_(s.areas.pte_w[f], L.and_(s.dmap.present[f], s.dmap.w[f]))


def wx(s: State, c: Ctx, L: Logic) -> Any:
    return L.all_(L.not_(L.and_(writable(s, f, L), executable(s, f, L)))
                  for f in range(c.bounds.frames))
