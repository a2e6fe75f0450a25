"""Symbolic states: z3 constants in the shape of a `State`, and the way back to Python.

Every engine that talks to z3 goes through these helpers so that a leaf's z3 name is
always `tag + "." + path` (the dotted path of `model.state.leaves`), which makes a model
readable and lets two states of the same unrolling never share a constant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import z3

from model.actions.base import Ctx
from model.logic import WIDTH, as_term
from model.state import (
    BAD_REASONS,
    CONTENTS,
    MAPPINGS,
    OWNERS,
    PAGE_KINDS,
    PHASES,
    PROG_STATES,
    RW_COPIES,
    State,
    rebuild,
)
from model.state import leaves as state_leaves


def fresh_z3() -> None:
    """Give z3 a new main context, as a fresh process has. Which of several shortest
    counterexamples z3 returns (and how long it takes) depends on every term its context
    made before; starting each profile's check from a new context makes the check of a
    profile the same whether it runs alone, after other profiles in one process, or in a
    worker process of its own. z3's Python API has no public call for it: the next
    `main_ctx()` builds a new context once the module's one is dropped."""
    z3.z3._main_ctx = None


def fresh_state(template: State, tag: str) -> State:
    """A state of `template`'s shape whose every leaf is a new z3 constant.

    `template` may be concrete or symbolic: only the sort of each leaf is read."""
    vals: list[Any] = []
    for path, v in state_leaves(template):
        name = f"{tag}.{path}"
        # bool before int: bool is a subclass of int in Python
        is_bool = isinstance(v, bool) or (isinstance(v, z3.ExprRef) and z3.is_bool(v))
        vals.append(z3.Bool(name) if is_bool else z3.BitVec(name, WIDTH))
    return rebuild(template, vals)


as_z3 = as_term  # one coercion of leaves to z3 terms, shared with model.logic


def flat(s: State) -> list[Any]:
    """The leaves of `s` in `leaves` order, without their paths."""
    return [v for _, v in state_leaves(s)]


def equal_to(sym: State, concrete: State) -> Any:
    """z3: the symbolic state `sym` is exactly `concrete`."""
    return z3.And(*[as_z3(a) == as_z3(b) for a, b in zip(flat(sym), flat(concrete), strict=True)])


def states_differ(a: State, b: State) -> Any:
    """z3: the two symbolic states differ in at least one leaf."""
    return z3.Or(*[as_z3(x) != as_z3(y) for x, y in zip(flat(a), flat(b), strict=True)])


def _ranges(ctx: Ctx) -> dict[str, int]:
    """Exclusive upper bounds of the enum and index fields, by field path (no index).

    `dmap.splits` counts leaves split, and a split is never undone, so it stays within
    the number of leaves (one per area slot)."""
    b = ctx.bounds
    return {
        "dmap.splits": b.areas + 1,
        "pages.kind": len(PAGE_KINDS),
        "pages.mapping": len(MAPPINGS),
        "pages.bad": len(BAD_REASONS),
        "pages.content": len(CONTENTS),
        "pages.refcount": b.max_ref + 1,
        "pages.mapcount": b.max_ref + 1,
        "areas.owner": len(OWNERS),
        "areas.npages": b.hpage + 1,
        "areas.phase": len(PHASES),
        "areas.rw_copy": len(RW_COPIES),
        "progs.state": len(PROG_STATES),
        "progs.area": b.areas,
        "progs.chunk": b.chunks,
        "refs.frame": b.frames,
    }


def state_constraints(sym: State, ctx: Ctx) -> list[tuple[str, Any]]:
    """Well-formedness of a state, as (label, z3 Bool) pairs: enum fields in range,
    refcounts within `max_ref`, indices within the bounds.

    These are claims about every reachable state, not facts: an engine that assumes them
    (k-induction) must also check them on the reachable states, and the label is what it
    reports when one fails."""
    ranges = _ranges(ctx)
    out: list[tuple[str, Any]] = []
    for path, v in state_leaves(sym):
        if isinstance(v, bool | int) or z3.is_bool(v):
            continue
        field = path.rsplit(".", 1)[0] if path.count(".") >= 2 else path
        hi = ranges.get(field)
        if hi is None:
            continue
        out.append((f"{path} < {hi}", z3.ULT(v, hi)))
    return out


def same_state(concrete: State, claimed: State) -> bool:
    """The concrete state is the one z3 claimed, reading ints as WIDTH-bit words: a count
    that underflows is -1 concretely and 2**WIDTH - 1 in z3."""
    mod = 1 << WIDTH
    return all((a % mod == b % mod) if isinstance(a, int) and not isinstance(a, bool) else a == b
               for (_, a), (_, b) in zip(state_leaves(concrete), state_leaves(claimed), strict=True))


def _py(v: Any) -> Any:
    if z3.is_true(v):
        return True
    if z3.is_false(v):
        return False
    if z3.is_bv_value(v):
        return v.as_long()
    raise ValueError(f"not a constant after evaluation: {v}")


def concretize(model: z3.ModelRef, sym: State) -> State:
    """Read a symbolic state back from a z3 model as Python ints and bools."""
    vals = []
    for _, v in state_leaves(sym):
        if isinstance(v, bool | int):
            vals.append(v)
        else:
            vals.append(_py(model.eval(v, model_completion=True)))
    return rebuild(sym, vals)


def substitute(term: Any, sym: State, concrete: State) -> Any:
    """`term` (a z3 term, a Python constant, or a whole state of them) with every leaf
    constant of `sym` replaced by the matching value of `concrete`, then simplified.

    A term that simplifies to a constant comes back as a Python bool or int; anything
    else (a constant this state does not cover) comes back as the simplified z3 term."""
    return substituter(sym, concrete)(term)


def substituter(sym: State, concrete: State) -> Callable[[Any], Any]:
    """`substitute` with `sym` and `concrete` fixed: the pairs are built once, and a leaf
    that is itself one of `sym`'s constants is looked up instead of simplified."""
    pairs = [(a, as_z3(b)) for a, b in zip(flat(sym), flat(concrete), strict=True)
             if not isinstance(a, bool | int)]
    direct = {a.get_id(): b for a, b in zip(flat(sym), flat(concrete), strict=True)
              if not isinstance(a, bool | int)}

    def one(t: Any) -> Any:
        if isinstance(t, bool | int):
            return t
        hit = direct.get(t.get_id())
        if hit is not None:
            return hit
        r = z3.simplify(z3.substitute(t, *pairs))
        try:
            return _py(r)
        except ValueError:
            return r

    def go(term: Any) -> Any:
        if isinstance(term, State):
            return rebuild(term, [one(t) for t in flat(term)])
        return one(term)

    return go


def distinct_subterms(term: Any) -> Iterator[Any]:
    """Every subterm of a z3 term once (terms are DAGs: a shared node is visited once);
    a quantifier is yielded but not entered."""
    seen: set[int] = set()
    todo = [term]
    while todo:
        t = todo.pop()
        if t.get_id() in seen:
            continue
        seen.add(t.get_id())
        yield t
        if z3.is_app(t):
            todo.extend(t.children())


def leaf_reads(terms: list[Any], leaves: list[Any]) -> list[frozenset[int]]:
    """For each term, the (indices of the) `leaves` constants it contains.

    Terms share most of their structure (an effect's leaves are `If` chains over the same
    guards), so every node's answer is remembered by its z3 id, and the walk goes through
    z3's C API directly: the Python wrappers (`children()`) cost ten times as much."""
    if not leaves:
        return [frozenset() for _ in terms]
    ctx = leaves[0].ctx.ref()
    leaf_idx = {z3.Z3_get_ast_id(ctx, x.as_ast()): k for k, x in enumerate(leaves)}
    memo: dict[int, frozenset[int]] = {}
    nothing: frozenset[int] = frozenset()
    out: list[frozenset[int]] = []
    for t in terms:
        if isinstance(t, bool | int):
            out.append(nothing)
            continue
        root = t.as_ast()
        rid = z3.Z3_get_ast_id(ctx, root)
        stack = [(root, rid, False)]
        while stack:
            a, i, done = stack.pop()
            if done:
                acc: set[int] = set()
                for j in range(z3.Z3_get_app_num_args(ctx, a)):
                    acc |= memo[z3.Z3_get_ast_id(ctx, z3.Z3_get_app_arg(ctx, a, j))]
                memo[i] = frozenset(acc)
                continue
            if i in memo:
                continue
            if i in leaf_idx:
                memo[i] = frozenset((leaf_idx[i],))
                continue
            if z3.Z3_get_ast_kind(ctx, a) != z3.Z3_APP_AST:
                memo[i] = nothing  # a numeral or a quantifier-free leaf of another kind
                continue
            stack.append((a, i, True))
            for j in range(z3.Z3_get_app_num_args(ctx, a)):
                c = z3.Z3_get_app_arg(ctx, a, j)
                ci = z3.Z3_get_ast_id(ctx, c)
                if ci not in memo:
                    stack.append((c, ci, False))
        out.append(memo[rid])
    return out


def raise_if_interrupted(solver: z3.Solver) -> None:
    """z3 turns Ctrl-C during a query into `unknown`; make it an interrupt again, so that
    a run stops and prints what it finished instead of reporting an unknown and going on."""
    if "interrupted" in solver.reason_unknown():
        raise KeyboardInterrupt
