"""What must hold: one predicate over the whole state per invariant, written against
`Logic` so that every engine evaluates these very functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invariants.direct_map_integrity import direct_map_integrity
from invariants.no_exec_uninit import no_exec_uninit
from invariants.no_invalid_alias import no_invalid_alias
from invariants.no_leak import no_leak
from invariants.no_stale_alias import no_stale_alias
from invariants.no_stale_exec import no_stale_exec
from invariants.no_tail_as_base import no_tail_as_base
from invariants.pack_bookkeeping import pack_bookkeeping
from invariants.refcount_sanity import refcount_sanity
from invariants.wx import wx
from model.actions.base import Ctx
from model.logic import Logic
from model.profiles import INVARIANT_NAMES
from model.state import State

Invariant = Callable[[State, Ctx, Logic], Any]

INVARIANTS: dict[str, Invariant] = {
    f.__name__: f
    for f in (no_tail_as_base, no_exec_uninit, no_stale_exec, wx, direct_map_integrity,
              refcount_sanity, pack_bookkeeping, no_leak, no_invalid_alias, no_stale_alias)
}
assert tuple(INVARIANTS) == INVARIANT_NAMES, "model.profiles.INVARIANT_NAMES out of step"


def doc(name: str) -> str:
    """The first line of the invariant's story."""
    import sys

    mod = sys.modules[INVARIANTS[name].__module__]
    return (mod.__doc__ or "").strip().splitlines()[0]
