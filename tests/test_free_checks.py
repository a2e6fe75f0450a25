"""free_pages_prepare's checks (model/actions/page_alloc.py `free_checks`), one at a time:
from a block that passes them all, each change below makes exactly one page fail with
exactly one reason, in both worlds. The histories only ever see the first failing check of
a page, so a check that is never first went unchecked: mutation testing dropped the
refcount check of every page but the first and no fast check noticed (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest

from model.actions.page_alloc import free_checks
from model.bounds import WIDE
from model.logic import CONCRETE, SYMBOLIC
from model.state import (
    BAD_COMPOUND_HEAD,
    BAD_MAPCOUNT,
    BAD_MAPPING,
    BAD_NONE,
    BAD_NOT_TAIL,
    BAD_REFCOUNT,
    BAD_TAIL_MAPPING,
    MAPPING_FILE,
    MAPPING_NULL,
    PG_BASE,
    PG_HEAD,
    PG_TAIL,
    TAIL_MAPPING,
    State,
    evolve,
    initial_state,
)

BLOCK = range(0, WIDE.hpage)  # four pages: a head and three tails, or four base pages


def block(compound: bool, **changes: dict[int, Any]) -> State:
    """The block as the last put_page leaves it: only the first page still counted (the
    page being freed), tails with TAIL_MAPPING from the third on; then `changes`, field ->
    {frame: value}."""
    s = initial_state(WIDE)
    p = s.pages
    n = len(p.kind)
    fields: dict[str, list[Any]] = {
        "kind": list(p.kind), "refcount": list(p.refcount), "mapcount": [0] * n,
        "mapping": list(p.mapping), "lru": [False] * n,
    }
    for i, f in enumerate(BLOCK):
        fields["kind"][f] = (PG_HEAD if i == 0 else PG_TAIL) if compound else PG_BASE
        fields["refcount"][f] = 1 if i == 0 else 0
        fields["mapping"][f] = TAIL_MAPPING if compound and i >= 1 else MAPPING_NULL
    for name, at in changes.items():
        for f, v in at.items():
            fields[name][f] = v
    return s.replace(pages=evolve(p, **{k: tuple(v) for k, v in fields.items()}))


# (why, compound, debug_vm, changes, {frame: reason} expected; every other frame BAD_NONE)
CASES: list[tuple[str, bool, bool, dict[str, dict[int, Any]], dict[int, int]]] = [
    ("a block that passes every check", True, True, {}, {}),
    ("the page being freed keeps its reference", False, True, {}, {}),
    ("a tail from the third on without TAIL_MAPPING", True, True,
     {"mapping": {3: MAPPING_NULL}}, {3: BAD_TAIL_MAPPING}),
    ("the first two tails may keep compound metadata in ->mapping", True, True,
     {"mapping": {1: MAPPING_NULL, 2: MAPPING_NULL}}, {}),
    ("a tail that is not PageTail", True, True, {"kind": {2: PG_BASE}}, {2: BAD_NOT_TAIL}),
    ("a tail whose compound_head bit a driver cleared", True, True, {"lru": {1: True}},
     {1: BAD_COMPOUND_HEAD}),
    ("without DEBUG_VM the tail checks are not made", True, False,
     {"kind": {2: PG_BASE}, "lru": {1: True}, "mapping": {3: MAPPING_NULL}}, {}),
    ("a mapped head", True, True, {"mapcount": {0: 1}}, {0: BAD_MAPCOUNT}),
    ("a mapped tail", True, True, {"mapcount": {3: 1}}, {3: BAD_MAPCOUNT}),
    ("a head with ->mapping", True, True, {"mapping": {0: MAPPING_FILE}}, {0: BAD_MAPPING}),
    ("a base page with ->mapping", False, True, {"mapping": {2: MAPPING_FILE}}, {2: BAD_MAPPING}),
    ("a counted tail", True, True, {"refcount": {1: 1}}, {1: BAD_REFCOUNT}),
    ("a counted tail without DEBUG_VM", True, False, {"refcount": {3: 2}}, {3: BAD_REFCOUNT}),
    ("a counted base page after the first", False, True, {"refcount": {1: 1}}, {1: BAD_REFCOUNT}),
    ("the tail checks come first", True, True, {"lru": {1: True}, "refcount": {1: 1}},
     {1: BAD_COMPOUND_HEAD}),
]


@pytest.mark.parametrize(("why", "compound", "debug_vm", "changes", "want"), CASES,
                         ids=[c[0] for c in CASES])
@pytest.mark.parametrize("L", [CONCRETE, SYMBOLIC], ids=["concrete", "symbolic"])
def test_each_check_fails_alone(L: Any, why: str, compound: bool, debug_vm: bool,
                                changes: dict[str, dict[int, Any]], want: dict[int, int]) -> None:
    got = free_checks(block(compound, **changes), BLOCK, compound, L, debug_vm)
    assert [int(r) for r in got] == [want.get(f, BAD_NONE) for f in BLOCK], why
