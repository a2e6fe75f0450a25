"""pack_bookkeeping: the bpf_prog_pack bitmap tells the truth.

A bit is set exactly when its chunk belongs to a live program; bits exist only in packs;
an empty pack is freed. When bpf_prog_pack_free cannot find a program's pack (a mask
lookup on a pack not aligned to its own size, fixed by range lookup in ea2babac63d4,
6.0), it warns and leaks the chunks.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import OWN_PACK, PROG_NONE, State


def pack_bookkeeping(s: State, c: Ctx, L: Logic) -> Any:
    b = c.bounds
    terms = []
    for a in range(b.areas):
        is_pack = L.eq(s.areas.owner[a], OWN_PACK)
        bits = [s.areas.bitmap[a * b.chunks + k] for k in range(b.chunks)]
        terms.append(L.implies(is_pack, L.any_(bits)))
        for k in range(b.chunks):
            owned = L.any_(
                L.and_(L.ne(s.progs.state[p], PROG_NONE), L.eq(s.progs.area[p], a),
                       L.eq(s.progs.chunk[p], k))
                for p in range(b.progs)
            )
            if not c.flags.bpf_prog_pack:
                owned = False
            terms.append(L.eq(bits[k], L.and_(is_pack, owned)))
    return L.all_(terms)
