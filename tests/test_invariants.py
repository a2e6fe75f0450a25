"""Every conjunct of every invariant, tested on its own.

The conjuncts are read mechanically from each invariant's source (`Conjuncts`): the
terms of its `L.all_` / `L.and_`, through `terms.append(...)`, generator expressions,
names bound once, and the consequent of `L.implies`. Dropping a conjunct means compiling
the invariant again with that one term replaced by `True`.

A case is a hand-built state where the invariant is violated under `Concrete` and
`Symbolic`, and dropping exactly one conjunct repairs it: that conjunct, and only that
one, is false. Every case also has control states where the invariant holds, chosen
near the edge (a base page may carry the fields a tail may not; an executable frame
whose alias is not present is not executable through it).

The meta-test: every conjunct of every invariant is the one a case isolates, or is
listed in REDUNDANT and z3 proves that dropping it changes nothing. So a new invariant,
or a new conjunct, without a state that shows it matters fails.
"""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import z3

from invariants import INVARIANTS
from model.logic import CONCRETE, SYMBOLIC
from model.profiles import PROFILES
from model.state import (
    BAD_COMPOUND_HEAD,
    BAD_MAPCOUNT,
    BAD_MAPPING,
    BAD_NOT_TAIL,
    BAD_REF_ZERO,
    BAD_REFCOUNT,
    BAD_TAIL_MAPPING,
    CODE,
    MAPPING_FILE,
    MAPPING_NULL,
    OWN_MODULE,
    OWN_PACK,
    OWN_ROX_CACHE,
    OWN_VMALLOC,
    PG_BASE,
    PG_FREE,
    PG_HEAD,
    PG_TAIL,
    PH_LOCKED,
    PH_WRITTEN,
    PROG_ALLOCATED,
    PROG_LIVE,
    PROG_NONE,
    RWC_FREED,
    TAIL_MAPPING,
    TRAP,
    UNINIT,
    ZERO,
    State,
    evolve,
    initial_state,
)
from model.system import System
from search.engines.symbolic import fresh_state, state_constraints, substituter

Invariant = Callable[[State, Any, Any], Any]

# ---- reading the conjuncts off the source ----------------------------------------------


class UnsupportedShape(AssertionError):
    """An invariant built in a way `Conjuncts` cannot take apart: teach it, do not skip."""


class Conjuncts:
    """The conjuncts of one invariant function, each a source node, and the invariant
    recompiled with any one of them replaced by `True`."""

    def __init__(self, fn: Invariant, source: str | None = None) -> None:
        self.fn_name = fn.__name__
        self.module = sys.modules[fn.__module__]
        self.source = source if source is not None else inspect.getsource(self.module)
        self.keys = [key for key, _ in self._walk(ast.parse(self.source))]
        self._dropped: dict[int, Invariant] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def _walk(self, tree: ast.Module) -> list[tuple[str, ast.expr]]:
        fdefs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == self.fn_name]
        if len(fdefs) != 1:
            raise UnsupportedShape(f"{self.fn_name}: not one top-level def")
        fdef = fdefs[0]
        if len(fdef.args.args) != 3:
            raise UnsupportedShape(f"{self.fn_name}: an invariant is f(state, ctx, L)")
        logic = fdef.args.args[2].arg
        assigned: dict[str, list[ast.expr]] = {}
        for n in ast.walk(fdef):
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    for name in ast.walk(t):
                        if isinstance(name, ast.Name):
                            assigned.setdefault(name.id, []).append(n.value)
            elif isinstance(n, ast.AugAssign | ast.AnnAssign) and isinstance(n.target, ast.Name):
                assigned.setdefault(n.target.id, []).append(n.value or ast.Constant(None))
        out: list[tuple[str, ast.expr]] = []

        def is_op(n: ast.AST, *ops: str) -> bool:
            return (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                    and isinstance(n.func.value, ast.Name) and n.func.value.id == logic
                    and n.func.attr in ops)

        def appended(list_name: str) -> list[ast.expr]:
            """The terms of a list built as `name = []` and `name.append(term)` only."""
            values = assigned.get(list_name, [])
            if len(values) != 1 or not (isinstance(values[0], ast.List) and not values[0].elts):
                raise UnsupportedShape(f"{self.fn_name}: {list_name} is not built from []")
            terms, uses = [], 0
            for n in ast.walk(fdef):
                if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                        and isinstance(n.func.value, ast.Name) and n.func.value.id == list_name):
                    if n.func.attr != "append" or len(n.args) != 1:
                        raise UnsupportedShape(f"{self.fn_name}: {list_name}.{n.func.attr}")
                    terms.append(n.args[0])
                if isinstance(n, ast.Name) and n.id == list_name and isinstance(n.ctx, ast.Load):
                    uses += 1
            # every load is an append receiver, but for the one `L.all_(name)`
            if uses != len(terms) + 1:
                raise UnsupportedShape(f"{self.fn_name}: {list_name} is used beyond append")
            return terms

        def go(n: ast.expr, context: list[str], suffix: str) -> None:
            if is_op(n, "and_", "all_"):
                if any(isinstance(a, ast.Starred) for a in n.args) or n.keywords:
                    raise UnsupportedShape(f"{self.fn_name}: {ast.unparse(n)}")
                if is_op(n, "and_"):
                    for a in n.args:
                        go(a, context, suffix)
                    return
                (arg,) = n.args
                if isinstance(arg, ast.GeneratorExp | ast.ListComp):
                    clauses = "".join(ast.unparse(g) for g in arg.generators)
                    go(arg.elt, context, clauses + suffix)
                elif isinstance(arg, ast.List | ast.Tuple):
                    for e in arg.elts:
                        go(e, context, suffix)
                elif isinstance(arg, ast.Name):
                    for t in appended(arg.id):
                        go(t, context, suffix)
                else:
                    raise UnsupportedShape(f"{self.fn_name}: {ast.unparse(n)}")
                return
            if is_op(n, "implies"):
                go(n.args[1], [*context, ast.unparse(n.args[0])], suffix)
                return
            values = assigned.get(n.id, []) if isinstance(n, ast.Name) else []
            if len(values) == 1 and is_op(values[0], "and_", "all_", "implies"):
                go(values[0], context, suffix)  # a name bound once to a conjunction
                return
            out.append((" => ".join([*context, ast.unparse(n)]) + suffix, n))

        returns = [n for n in ast.walk(fdef) if isinstance(n, ast.Return)]
        if len(returns) != 1 or returns[0].value is None:
            raise UnsupportedShape(f"{self.fn_name}: not one return")
        go(returns[0].value, [], "")
        seen: dict[str, int] = {}
        keyed = []
        for key, node in out:
            seen[key] = seen.get(key, 0) + 1
            keyed.append((key if seen[key] == 1 else f"{key} #{seen[key]}", node))
        return keyed

    def dropped(self, i: int) -> Invariant:
        """The invariant with conjunct `i` replaced by `True`."""
        if i not in self._dropped:
            tree = ast.parse(self.source)
            target = self._walk(tree)[i][1]
            _replace(tree, target, ast.Constant(True))
            self._dropped[i] = self._compile(tree, f"<{self.fn_name} without {self.keys[i]}>")
        return self._dropped[i]

    def compiled(self) -> Invariant:
        """The invariant as the source reads (the source may be a test's edited copy)."""
        return self._compile(ast.parse(self.source), f"<{self.fn_name}>")

    def _compile(self, tree: ast.Module, filename: str) -> Invariant:
        ns: dict[str, Any] = {"__name__": f"{self.module.__name__}__edited"}
        exec(compile(ast.fix_missing_locations(tree), filename, "exec"), ns)
        return ns[self.fn_name]

    def isolating(self, s: State, ctx: Any) -> list[int]:
        """The conjuncts whose removal alone makes the invariant hold on `s` (concretely)."""
        return [i for i in range(len(self)) if self.dropped(i)(s, ctx, CONCRETE)]


def _replace(tree: ast.AST, target: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for k, v in enumerate(value):
                    if v is target:
                        value[k] = new
                        return
    raise AssertionError("conjunct node not found")


@cache
def conjuncts(name: str) -> Conjuncts:
    return Conjuncts(INVARIANTS[name])


# ---- evaluating an invariant on a concrete state, both ways -----------------------------


@cache
def system(profile: str) -> System:
    return System.build(profile)


@cache
def _symbolic(profile: str, name: str) -> tuple[State, Any]:
    x = fresh_state(system(profile).initial(), "x")
    return x, INVARIANTS[name](x, system(profile).ctx, SYMBOLIC)


def concrete(profile: str, name: str, s: State) -> bool:
    return bool(INVARIANTS[name](s, system(profile).ctx, CONCRETE))


def symbolic(profile: str, name: str, s: State) -> Any:
    """The z3 invariant over a fresh state, with the concrete state substituted in."""
    x, term = _symbolic(profile, name)
    return substituter(x, s)(term)


# ---- hand-built states -------------------------------------------------------------------


def put(s: State, changes: dict[str, Any]) -> State:
    """`s` with fields changed: {"pages.kind": {frame: value, ...}, "dmap.splits": 1}."""
    for path, value in changes.items():
        part, field = path.split(".")
        sub = getattr(s, part)
        old = getattr(sub, field)
        if isinstance(value, dict):
            assert isinstance(old, tuple), path
            new = list(old)
            for k, v in value.items():
                new[k] = v
            value = tuple(new)
        s = s.replace(**{part: evolve(sub, **{field: value})})
    return s


B = System.build("v6.0").bounds
S0 = initial_state(B)
assert (B.frames, B.hpage, B.cells, B.chunks, B.progs, B.refs, B.max_ref) == (4, 2, 2, 2, 2, 1, 3), \
    "the states below are drawn for the default scope"

# frames 2 (head) and 3 (tail): a compound page as prep_compound_page leaves it
COMPOUND = put(S0, {"pages.kind": {2: PG_HEAD, 3: PG_TAIL}, "pages.refcount": {2: 1},
                    "pages.mapping": {3: TAIL_MAPPING}})
# frames 0 and 1 base pages carrying every field a driver may write on a base page
SCRIBBLED_BASE = put(COMPOUND, {"pages.kind": {0: PG_BASE, 1: PG_BASE},
                                "pages.refcount": {0: 1, 1: 2}, "pages.mapping": {1: MAPPING_FILE},
                                "pages.lru": {1: True}, "pages.index": {1: True},
                                "pages.private": {1: True}})
ALLOC0 = put(S0, {"pages.kind": {0: PG_BASE, 1: PG_BASE}, "pages.refcount": {0: 1, 1: 1}})
ALLOC1 = put(S0, {"pages.kind": {2: PG_BASE, 3: PG_BASE}, "pages.refcount": {2: 1, 3: 1}})
# area 0: a two-page vmalloc buffer; the driver's pointer holds a counted reference to frame 1
VMALLOCED = put(ALLOC0, {"areas.owner": {0: OWN_VMALLOC}, "areas.npages": {0: 2},
                         "areas.pte_w": {0: True, 1: True}, "pages.refcount": {1: 2},
                         "refs.held": {0: True}, "refs.counted": {0: True}, "refs.frame": {0: 1}})
# area 0: a two-page pack (v6.0: PMD_SIZE), program 0 live in chunk 0 (cells 0-1, frame 0),
# chunk 1 (cells 2-3, frame 1) free and trap-filled
PACK = put(ALLOC0, {"areas.owner": {0: OWN_PACK}, "areas.npages": {0: 2},
                    "areas.pte_x": {0: True, 1: True}, "areas.bitmap": {0: True},
                    "progs.state": {0: PROG_LIVE}, "progs.area": {0: 0}, "progs.chunk": {0: 0},
                    "pages.content": {0: CODE, 1: CODE, 2: TRAP, 3: TRAP}})


# area 0: a huge (PMD) mapping of two pages, read-only and executable, as the ROX cache has it
HUGE = put(ALLOC0, {"areas.owner": {0: OWN_ROX_CACHE}, "areas.npages": {0: 2},
                    "areas.huge": {0: True}, "areas.pte_x": {0: True, 1: True},
                    "pages.content": {0: TRAP, 1: TRAP, 2: TRAP, 3: TRAP},
                    "dmap.w": {0: False, 1: False}})


@dataclass(frozen=True)
class Case:
    invariant: str
    conjunct: str  # a fragment of the source of the conjunct the violations isolate
    violating: dict[str, State]
    holding: dict[str, State]
    profile: str = "v6.0"

    @property
    def id(self) -> str:
        return f"{self.invariant}[{self.conjunct}]" + ("" if self.profile == "v6.0" else f"@{self.profile}")


def _tail(changes: dict[str, Any]) -> State:
    return put(COMPOUND, changes)


CASES: list[Case] = [
    # ---- no_tail_as_base
    Case("no_tail_as_base", "L.eq(p.refcount[f], 0)",
         {"a tail's own refcount moved": _tail({"pages.refcount": {3: 1}})},
         {"a compound page": COMPOUND, "the head holds many references": _tail({"pages.refcount": {2: 3}})}),
    Case("no_tail_as_base", "p.mapping[f], TAIL_MAPPING",
         {"a file mapping on a tail": _tail({"pages.mapping": {3: MAPPING_FILE}}),
          "TAIL_MAPPING cleared": _tail({"pages.mapping": {3: MAPPING_NULL}})},
         {"base pages and the head own ->mapping":
          put(SCRIBBLED_BASE, {"pages.mapping": {2: MAPPING_FILE}})}),
    Case("no_tail_as_base", "p.lru[f]",
         {"INIT_LIST_HEAD on a tail": _tail({"pages.lru": {3: True}})},
         {"lru on base pages and the head": put(SCRIBBLED_BASE, {"pages.lru": {2: True}})}),
    Case("no_tail_as_base", "p.index[f]",
         {"->index on a tail": _tail({"pages.index": {3: True}})},
         {"->index on base pages and the head": put(SCRIBBLED_BASE, {"pages.index": {2: True}})}),
    Case("no_tail_as_base", "p.private[f]",
         {"->private on a tail": _tail({"pages.private": {3: True}})},
         {"->private on base pages and the head": put(SCRIBBLED_BASE, {"pages.private": {2: True}})}),
    Case("no_tail_as_base", "p.kind[head], PG_HEAD",
         {"a tail after a base page": _tail({"pages.kind": {2: PG_BASE}}),
          "a tail at the start of a huge-page zone": _tail({"pages.kind": {0: PG_TAIL},
                                                            "pages.mapping": {0: TAIL_MAPPING}})},
         {"a compound page": COMPOUND}),
    Case("no_tail_as_base", "p.bad[f]",
         {"corrupted mapping in tail page": _tail({"pages.bad": {3: BAD_TAIL_MAPPING}}),
          "PageTail not set": _tail({"pages.bad": {1: BAD_NOT_TAIL}}),
          "compound_head not consistent": _tail({"pages.bad": {0: BAD_COMPOUND_HEAD}})},
         {"check_free_page's reports are refcount_sanity's":
          _tail({"pages.bad": {0: BAD_MAPCOUNT, 1: BAD_MAPPING, 2: BAD_REFCOUNT}})}),
    # ---- no_exec_uninit
    Case("no_exec_uninit", "content[k], UNINIT",
         {"the second cell of an executable frame": put(S0, {"areas.pte_x": {1: True},
                                                             "pages.content": {2: CODE}}),
          "executable through the direct map": put(S0, {"dmap.x": {3: True}, "pages.content": {6: ZERO}}),
          "nothing written": put(S0, {"areas.pte_x": {2: True}}),
          "a reused page behind a stale TLB entry": put(ALLOC0, {"areas.tlb_x": {1: True},
                                                               "dmap.w": {1: False}})},
         {"every cell written": put(S0, {"areas.pte_x": {1: True}, "pages.content": {2: CODE, 3: TRAP}}),
          "an X alias that is not present": put(S0, {"dmap.x": {3: True}, "dmap.present": {3: False}}),
          "writable, not executable": put(S0, {"areas.pte_w": {0: True}})}),
    # ---- no_stale_exec
    Case("no_stale_exec", "content[cell], CODE",
         {"code in a free chunk": put(PACK, {"pages.content": {3: CODE}}),
          "a freed module's text behind a stale TLB entry": put(S0, {"areas.tlb_x": {2: True},
                                                                   "pages.content": {4: CODE}}),
          "a one-page image in a slot that held two": put(ALLOC1, {
              "areas.owner": {1: OWN_MODULE}, "areas.npages": {1: 1}, "areas.tlb_x": {3: True},
              "dmap.w": {3: False}, "pages.content": {6: CODE}}),
          "a freed program's code not invalidated": put(PACK, {"progs.state": {0: PROG_NONE}}),
          "held by a program in another area": put(PACK, {"progs.state": {1: PROG_LIVE},
                                                          "progs.area": {1: 1}, "progs.chunk": {1: 1},
                                                          "pages.content": {2: CODE, 3: CODE}})},
         {"a live program": PACK,
          "freed and invalidated": put(PACK, {"progs.state": {0: PROG_NONE}, "areas.bitmap": {0: False},
                                              "pages.content": {0: TRAP, 1: TRAP}}),
          "a chunk held by an allocated program": put(PACK, {"progs.state": {1: PROG_ALLOCATED},
                                                             "progs.area": {1: 0}, "progs.chunk": {1: 1},
                                                             "areas.bitmap": {1: True},
                                                             "pages.content": {2: CODE, 3: CODE}}),
          "code in a non-executable frame": put(PACK, {"areas.pte_x": {1: False},
                                                       "pages.content": {2: CODE, 3: CODE}}),
          "a never-written free chunk (no_exec_uninit's business)":
              put(PACK, {"pages.content": {2: UNINIT, 3: UNINIT}}),
          "module text is live while allocated": put(ALLOC1, {"areas.owner": {1: OWN_MODULE},
                                                              "areas.npages": {1: 2},
                                                              "areas.pte_x": {2: True},
                                                              "pages.content": {4: CODE, 5: CODE}}),
          "a freed module's code behind a flushed TLB": put(S0, {"pages.content": {4: CODE}}),
          "module text while allocated": put(ALLOC1, {"areas.owner": {1: OWN_MODULE},
                                                      "areas.npages": {1: 2}, "areas.tlb_x": {3: True},
                                                      "pages.content": {6: CODE}})}),
    # ---- wx
    Case("wx", "writable(s, f, L), executable(s, f, L)",
         {"X through vmalloc, W through the direct map": put(S0, {"areas.pte_x": {3: True}}),
          "W and X through vmalloc": put(S0, {"areas.pte_w": {1: True}, "areas.pte_x": {1: True},
                                              "dmap.w": {1: False}}),
          "W and X through the direct map": put(S0, {"dmap.x": {2: True}}),
          "a freed page writable, X through a stale TLB entry": put(S0, {"areas.tlb_x": {1: True}})},
         {"boot": S0,
          "X through vmalloc, RO alias": put(S0, {"areas.pte_x": {3: True}, "dmap.w": {3: False}}),
          "X through vmalloc, alias not present": put(S0, {"areas.pte_x": {3: True},
                                                           "dmap.present": {3: False}}),
          "W through vmalloc": put(S0, {"areas.pte_w": {0: True}})}),
    # ---- direct_map_integrity
    Case("direct_map_integrity", "L.not_(L.and_(dm.present[f], dm.x[f]))",
         {"an executable leaf": put(ALLOC1, {"dmap.x": {2: True, 3: True}}),
          "one executable page of a split leaf": put(ALLOC0, {"dmap.x": {1: True}, "dmap.split": {0: True}})},
         {"X on a not-present leaf": put(ALLOC1, {"dmap.x": {2: True, 3: True},
                                                  "dmap.present": {2: False, 3: False}})}),
    Case("direct_map_integrity", "PG_FREE) => dm.present[f]",
         {"a free page left invalid": put(S0, {"dmap.present": {3: False}, "dmap.split": {1: True}})},
         {"an allocated page may be invalid": put(ALLOC1, {"dmap.present": {3: False},
                                                           "dmap.split": {1: True}})}),
    Case("direct_map_integrity", "PG_FREE) => dm.w[f]",
         {"a free page left RO": put(S0, {"dmap.w": {1: False}, "dmap.split": {0: True}})},
         {"an allocated page may be RO": put(ALLOC0, {"dmap.w": {1: False}, "dmap.split": {0: True}})}),
    Case("direct_map_integrity", "dm.present[f], dm.present[z.start]",
         {"an unsplit leaf half invalid": put(ALLOC1, {"dmap.present": {3: False}}),
          "its first page invalid": put(ALLOC0, {"dmap.present": {0: False}})},
         {"a split leaf half invalid": put(ALLOC1, {"dmap.present": {3: False}, "dmap.split": {1: True}})}),
    Case("direct_map_integrity", "dm.w[f], dm.w[z.start]",
         {"an unsplit leaf half RO": put(ALLOC0, {"dmap.w": {1: False}})},
         {"a split leaf half RO": put(ALLOC0, {"dmap.w": {1: False}, "dmap.split": {0: True}}),
          "a whole leaf RO": put(ALLOC0, {"dmap.w": {0: False, 1: False}})}),
    Case("direct_map_integrity", "dm.x[f], dm.x[z.start]",
         {"an unsplit invalid leaf half X": put(ALLOC1, {"dmap.present": {2: False, 3: False},
                                                         "dmap.x": {3: True}})},
         {"a split invalid leaf half X": put(ALLOC1, {"dmap.present": {2: False, 3: False},
                                                      "dmap.x": {3: True}, "dmap.split": {1: True}})}),
    Case("direct_map_integrity", "a.pte_w[f], a.pte_w[z.start]",
         {"one huge PMD half writable": put(HUGE, {"areas.pte_w": {1: True}})},
         {"a split huge mapping half writable": put(HUGE, {"areas.pte_w": {1: True},
                                                           "areas.vsplit": {0: True}})}),
    Case("direct_map_integrity", "a.pte_x[f], a.pte_x[z.start]",
         {"one huge PMD half executable": put(HUGE, {"areas.pte_x": {0: False}})},
         {"a split huge mapping half executable": put(HUGE, {"areas.pte_x": {0: False},
                                                             "areas.vsplit": {0: True}})}),
    # ---- no_invalid_alias
    Case("no_invalid_alias", "L.not_(s.oops.invalid_alias)",
         {"kcore read a missing alias": put(HUGE, {"oops.invalid_alias": True})},
         {"a missing alias nobody read": put(HUGE, {"dmap.present": {0: False, 1: False}})}),
    # ---- no_stale_alias
    Case("no_stale_alias", "L.not_(s.oops.stale_alias)",
         {"a write through a freed rw_copy": put(HUGE, {"oops.stale_alias": True})},
         {"a freed rw_copy nobody wrote through": put(HUGE, {"areas.rw_copy": {0: RWC_FREED}})}),
    Case("no_stale_alias", "L.not_(a.pte_w[text])",
         {"loaded text still temporarily RW": put(HUGE, {"areas.cached": {0: True},
                                                         "areas.phase": {0: PH_LOCKED},
                                                         "areas.pte_w": {0: True}})},
         {"text RW while the loader writes it": put(HUGE, {"areas.cached": {0: True},
                                                          "areas.phase": {0: PH_WRITTEN},
                                                          "areas.pte_w": {0: True}}),
          "a locked module not from the cache": put(HUGE, {"areas.phase": {0: PH_LOCKED},
                                                           "areas.pte_w": {0: True}})}),
    # ---- no_leak
    Case("no_leak", "L.or_(_owns(s, f, c, L), through)",
         {"a page nobody owns": put(S0, {"pages.kind": {1: PG_BASE}, "pages.refcount": {1: 1}}),
          "split backing freed by its head only": put(ALLOC1, {"pages.kind": {2: PG_FREE},
                                                               "pages.refcount": {2: 0}}),
          "a compound head whose area is gone": COMPOUND,
          "a driver's pointer without a reference": put(ALLOC0, {"refs.held": {0: True},
                                                                "refs.frame": {0: 0}}),
          # a zone's first page is owned through its tails only, never through a base page
          # after it, nor through any later page (mutation testing: `t == f` -> `t >= f`
          # and `g < f` -> `g != f` went unnoticed)
          "a base page next to a mapped one": put(ALLOC0, {"pages.mapcount": {1: 1}}),
          "a page before a counted one": put(ALLOC0, {"refs.held": {0: True},
                                                      "refs.counted": {0: True},
                                                      "refs.frame": {0: 1}})},
         {"a vmalloc buffer and a driver's reference": VMALLOCED,
          "a counted driver pointer": put(ALLOC0, {"pages.kind": {1: PG_FREE}, "pages.refcount": {1: 0},
                                                   "refs.held": {0: True}, "refs.counted": {0: True},
                                                   "refs.frame": {0: 0}}),
          "a block's uncounted rest belongs to its first page":
              put(ALLOC0, {"pages.refcount": {1: 0}, "refs.held": {0: True}, "refs.counted": {0: True},
                           "refs.frame": {0: 0}}),
          # the same in the second zone: the chain must start at that zone's first frame
          # (a mutation testing run found `f // hpage` -> `f & hpage` unnoticed)
          "a block's uncounted rest in the second zone":
              put(ALLOC1, {"pages.refcount": {3: 0}, "refs.held": {0: True}, "refs.counted": {0: True},
                           "refs.frame": {0: 2}}),
          "a tail's reference is the head's":
              put(COMPOUND, {"refs.held": {0: True}, "refs.counted": {0: True}, "refs.frame": {0: 3}}),
          "a page mapped to user space": put(COMPOUND, {"pages.mapcount": {3: 1}}),
          # the first slot of the second zone backs its area (`f % hpage` -> `f >> 1` went
          # unnoticed: equal on frames 0 and 3 only)
          "a one-page area in the second zone":
              put(ALLOC1, {"pages.kind": {3: PG_FREE}, "pages.refcount": {3: 0},
                           "areas.owner": {1: OWN_VMALLOC}, "areas.npages": {1: 1}}),
          "a compound page the free-time checks reported":
              put(COMPOUND, {"pages.bad": {3: BAD_TAIL_MAPPING}}),
          "boot": S0}),
    # ---- refcount_sanity
    Case("refcount_sanity", "L.le(0, counter)",
         {"refcount underflow": put(VMALLOCED, {"pages.refcount": {0: -1}}),
          "mapcount underflow": put(VMALLOCED, {"pages.mapcount": {1: -1}})},
         {"a vmalloc buffer and a driver's reference": VMALLOCED}),
    Case("refcount_sanity", "L.le(counter, b.max_ref)",
         {"refcount over the bound": put(VMALLOCED, {"pages.refcount": {1: B.max_ref + 1}}),
          "mapcount over the bound": put(VMALLOCED, {"pages.mapcount": {0: B.max_ref + 1}})},
         {"both at the bound": put(VMALLOCED, {"pages.refcount": {1: B.max_ref},
                                               "pages.mapcount": {1: B.max_ref}})}),
    Case("refcount_sanity", "p.bad[f]",
         {"nonzero mapcount": put(VMALLOCED, {"pages.bad": {0: BAD_MAPCOUNT}}),
          "non-NULL mapping": put(VMALLOCED, {"pages.bad": {2: BAD_MAPPING}}),
          "nonzero _refcount": put(VMALLOCED, {"pages.bad": {3: BAD_REFCOUNT}}),
          "VM_BUG_ON_PAGE on a zero refcount": put(VMALLOCED, {"pages.bad": {1: BAD_REF_ZERO}})},
         {"tail reports are no_tail_as_base's": put(VMALLOCED, {"pages.bad": {
             0: BAD_TAIL_MAPPING, 1: BAD_NOT_TAIL, 2: BAD_COMPOUND_HEAD}})}),
    Case("refcount_sanity", "free => L.eq(p.refcount[f], 0)",
         {"a free page with a reference": put(VMALLOCED, {"pages.refcount": {3: 1}})},
         {"allocated pages with references": VMALLOCED}),
    Case("refcount_sanity", "free => L.eq(p.mapcount[f], 0)",
         {"a free page still mapped to user space": put(VMALLOCED, {"pages.mapcount": {2: 1}})},
         {"an allocated page mapped to user space": put(VMALLOCED, {"pages.mapcount": {1: 1}})}),
    Case("refcount_sanity", "p.mapping[f], MAPPING_NULL",
         {"a free page with a file mapping": put(VMALLOCED, {"pages.mapping": {3: MAPPING_FILE}}),
          "a free page still TAIL_MAPPING": put(VMALLOCED, {"pages.mapping": {2: TAIL_MAPPING}})},
         {"an allocated page with a file mapping": put(VMALLOCED, {"pages.mapping": {1: MAPPING_FILE}})}),
    Case("refcount_sanity", "mapped => L.not_(free)",
         {"a mapped page freed": put(VMALLOCED, {"pages.kind": {1: PG_FREE}, "pages.refcount": {1: 0},
                                                 "refs.frame": {0: 0}}),
          # the second zone's first slot (mutation testing: `f % hpage` -> `f ** hpage`
          # went unnoticed, equal on frames 0 and 1 only)
          "the second zone's page freed under its area":
              put(VMALLOCED, {"areas.owner": {1: OWN_VMALLOC}, "areas.npages": {1: 1}})},
         {"past the end of a one-page area": put(VMALLOCED, {"areas.npages": {0: 1},
                                                             "pages.kind": {1: PG_FREE},
                                                             "pages.refcount": {1: 0},
                                                             "refs.frame": {0: 0}})}),
    Case("refcount_sanity", "at => L.not_(L.eq(p.kind[f], PG_FREE))",
         {"a counted pointer to a free page": put(VMALLOCED, {"refs.frame": {0: 3}})},
         {"an uncounted pointer to a free page": put(VMALLOCED, {"refs.frame": {0: 3},
                                                                "refs.counted": {0: False}}),
          "a dropped pointer": put(VMALLOCED, {"refs.frame": {0: 3}, "refs.held": {0: False}})}),
    # ---- pack_bookkeeping
    Case("pack_bookkeeping", "is_pack => L.any_(bits)",
         {"an empty pack not freed": put(PACK, {"areas.owner": {1: OWN_PACK}})},
         {"a pack with a program": PACK}),
    Case("pack_bookkeeping", "L.eq(bits[k], L.and_(is_pack, owned))",
         {"a bit without a program": put(PACK, {"areas.bitmap": {1: True}}),
          "a program without its bit": put(PACK, {"progs.state": {1: PROG_ALLOCATED},
                                                  "progs.area": {1: 0}, "progs.chunk": {1: 1}}),
          "a bit outside any pack": put(PACK, {"areas.bitmap": {2: True}}),
          "a program's bit in the wrong chunk": put(PACK, {"areas.bitmap": {0: False, 1: True}})},
         {"two packs": put(PACK, {"areas.owner": {1: OWN_PACK}, "areas.bitmap": {3: True},
                                  "progs.state": {1: PROG_LIVE}, "progs.area": {1: 1},
                                  "progs.chunk": {1: 1}})}),
    Case("pack_bookkeeping", "L.eq(bits[k], L.and_(is_pack, owned))",
         {"without bpf_prog_pack no chunk is owned": PACK},
         {"a per-program JIT image has no bits": put(PACK, {"areas.bitmap": {0: False},
                                                            "areas.owner": {0: OWN_MODULE}})},
         profile="v5.2"),
]

# conjuncts no state can isolate, and why; z3 proves each changes nothing when dropped
REDUNDANT: dict[tuple[str, str], str] = {
    ("direct_map_integrity", "L.eq(s.pages.kind[f], PG_FREE) => L.not_(dm.x[f])"):
        "a free page's alias must be present, and no present alias may be executable",
}


# ---- the tests ---------------------------------------------------------------------------


def _isolated(case: Case, s: State) -> list[str]:
    c = conjuncts(case.invariant)
    return [c.keys[i] for i in c.isolating(s, system(case.profile).ctx)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_conjunct_alone_is_violated(case: Case) -> None:
    assert case.violating and case.holding, "a case needs a violation and a control"
    for why, s in case.violating.items():
        assert concrete(case.profile, case.invariant, s) is False, f"Concrete misses: {why}"
        assert symbolic(case.profile, case.invariant, s) is False, f"Symbolic misses: {why}"
        only = _isolated(case, s)
        assert len(only) == 1, f"{why}: not exactly one conjunct false; dropping any of {only} repairs it"
        assert case.conjunct in only[0], f"{why}: isolates {only[0]!r}, not the {case.conjunct!r} term"
    for why, s in case.holding.items():
        assert concrete(case.profile, case.invariant, s) is True, f"Concrete flags the control: {why}"
        assert symbolic(case.profile, case.invariant, s) is True, f"Symbolic flags the control: {why}"


def test_every_conjunct_of_every_invariant_has_a_case() -> None:
    """The meta-test: a conjunct no case isolates (and not proven redundant) fails here."""
    covered = {(c.invariant, k) for c in CASES for s in c.violating.values() for k in _isolated(c, s)}
    missing, stale = [], []
    for name in INVARIANTS:
        keys = conjuncts(name).keys
        assert keys, f"{name}: no conjuncts read from its source"
        missing += [f"{name}: {k}" for k in keys
                    if (name, k) not in covered and (name, k) not in REDUNDANT]
    for name, k in REDUNDANT:
        if name not in INVARIANTS or k not in conjuncts(name).keys:
            stale.append(f"{name}: {k}")
    assert not missing, "conjuncts without a state where only they fail:\n  " + "\n  ".join(missing)
    assert not stale, "REDUNDANT names conjuncts that no longer exist:\n  " + "\n  ".join(stale)
    assert {c.invariant for c in CASES} == set(INVARIANTS)


@pytest.mark.parametrize(("name", "key"), list(REDUNDANT), ids=[f"{n}[{k}]" for n, k in REDUNDANT])
def test_redundant_conjunct_changes_nothing(name: str, key: str) -> None:
    """Under every profile, over every well-formed state: the invariant without the
    conjunct implies the invariant with it."""
    c = conjuncts(name)
    weaker = c.dropped(c.keys.index(key))
    for profile in PROFILES:
        ctx = system(profile).ctx
        x = fresh_state(system(profile).initial(), "x")
        solver = z3.Solver()
        solver.add(*[t for _, t in state_constraints(x, ctx)])
        solver.add(_bool(weaker(x, ctx, SYMBOLIC)), z3.Not(_bool(INVARIANTS[name](x, ctx, SYMBOLIC))))
        assert solver.check() == z3.unsat, f"{profile}: dropping {key} admits {solver.model()}"


def _bool(t: Any) -> Any:
    return z3.BoolVal(t) if isinstance(t, bool) else t


# ---- the meta-test's own machinery -------------------------------------------------------


def test_a_new_conjunct_without_a_case_is_reported() -> None:
    """Adding a conjunct to a copy of refcount_sanity makes it appear, uncovered."""
    name = "refcount_sanity"
    fn = INVARIANTS[name]
    src = inspect.getsource(sys.modules[fn.__module__])
    tree = ast.parse(src)
    fdef = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    ret = fdef.body[-1]
    assert isinstance(ret, ast.Return)
    extra = ast.parse("terms.append(L.not_(s.dmap.x[0]))").body[0]
    fdef.body.insert(len(fdef.body) - 1, extra)
    edited = Conjuncts(fn, ast.unparse(tree))
    assert set(edited.keys) - set(conjuncts(name).keys) == {"L.not_(s.dmap.x[0])"}
    i = edited.keys.index("L.not_(s.dmap.x[0])")
    ctx = system("v6.0").ctx
    for case in (c for c in CASES if c.invariant == name):
        for s in case.violating.values():
            assert i not in edited.isolating(s, system(case.profile).ctx)
    # and the edited copy really is the invariant plus that term
    s = put(VMALLOCED, {"dmap.x": {0: True}})
    assert edited.compiled()(VMALLOCED, ctx, CONCRETE) is True
    assert edited.compiled()(s, ctx, CONCRETE) is False
    assert edited.dropped(i)(s, ctx, CONCRETE) is True


def test_shapes_it_cannot_read_are_refused() -> None:
    """An invariant that builds its terms some other way is refused, not half-read."""
    fn = INVARIANTS["wx"]
    src = inspect.getsource(sys.modules[fn.__module__])
    tree = ast.parse(src)
    fdef = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "wx")
    fdef.body = [*ast.parse("terms = []\nterms.extend([True])\nreturn L.all_(terms)").body]
    with pytest.raises(UnsupportedShape, match="extend"):
        Conjuncts(fn, ast.unparse(tree))


def test_dropping_a_conjunct_replaces_that_term_only() -> None:
    c = conjuncts("no_tail_as_base")
    i = next(k for k, key in enumerate(c.keys) if "p.lru[f]" in key)
    tree = ast.parse(c.source)
    node = c._walk(tree)[i][1]
    before = ast.unparse(tree)
    _replace(tree, node, ast.Constant(True))
    after = ast.unparse(tree)
    assert before.count("L.not_(p.lru[f])") == 1
    assert before.replace("L.not_(p.lru[f])", "True") == after


def test_pack_bookkeeping_reads_each_packs_own_bits_at_any_chunk_count() -> None:
    """With three chunks a pack (not a power of two) the bit of area 1, chunk 2 is bit 5:
    an index computed as `a * chunks | k` or `^ k` (equal to `+ k` while chunks is a power
    of two, as at both preset scopes: mutation testing let them through) reads bit 3."""
    from model.bounds import Bounds
    from model.state import initial_state as boot

    system = System.build("v6.0", bounds=Bounds(chunks=3))
    s = put(boot(system.bounds), {"areas.owner": {1: OWN_PACK}, "areas.bitmap": {5: True},
                                  "progs.state": {0: PROG_LIVE}, "progs.area": {0: 1},
                                  "progs.chunk": {0: 2}})
    check = INVARIANTS["pack_bookkeeping"]
    assert check(s, system.ctx, CONCRETE) is True
    x = fresh_state(s, "x")
    assert substituter(x, s)(check(x, system.ctx, SYMBOLIC)) is True
    # and the same state with the bit of chunk 1 instead is wrong
    wrong = put(s, {"areas.bitmap": {5: False, 4: True}})
    assert check(wrong, system.ctx, CONCRETE) is False


def test_each_invariant_is_described_by_its_modules_first_line() -> None:
    """`python -m search list` prints `invariants.doc(name)`: the first line of the
    invariant module's story, never empty (mutation testing: `or` -> `and` and the line
    index went unnoticed by the fast checks)."""
    from invariants import doc

    for name, fn in INVARIANTS.items():
        story = (sys.modules[fn.__module__].__doc__ or "").strip()
        assert story, f"{name}: its module has no story"
        assert doc(name) == story.splitlines()[0] != "", name
    assert any(len((sys.modules[f.__module__].__doc__ or "").strip().splitlines()) > 1
               for f in INVARIANTS.values())
