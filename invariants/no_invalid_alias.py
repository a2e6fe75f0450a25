"""no_invalid_alias: nothing reads or writes memory through a direct-map alias that is not
there.

6.13-rc1's execmem ROX cache removed its pages from the direct map "to reduce amount of
direct map updates, however this cannot be tolerated by /proc/kcore that accesses module
memory using vread_iter() and the latter does vmalloc_to_page() and
copy_page_to_iter_nofault()" (925f42645118, 6.15, which keeps them mapped). Freed pages
whose alias was never restored are direct_map_integrity's; this is the access itself.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import State


def no_invalid_alias(s: State, c: Ctx, L: Logic) -> Any:
    return L.not_(s.oops.invalid_alias)
