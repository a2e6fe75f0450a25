"""`Symbolic` means what `Concrete` means: every operation of model/logic.py, on every
combination of small operands, each given as a Python constant, a z3 literal or a z3
variable (bound to the value afterwards), evaluates to the concrete result.

The engines only ever meet these operations through the model, where a path that folds
constants hides one that builds terms: mutation testing found `Symbolic.select` skipping
index 0 of a symbolic index unnoticed by every fast check (issue 13)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import z3

from model.logic import CONCRETE, SYMBOLIC, WIDTH, as_term

VALUES = range(4)
MOD = 1 << WIDTH
# around the top bit too: z3's own `<` and `<=` on bit-vectors are signed, the model's are not
WORDS = (0, 1, 2, 3, 127, 128, 254, 255)


def _int_forms(v: int, name: str) -> Iterator[tuple[Any, list[tuple[Any, Any]]]]:
    """`v` as a Python int, a z3 literal, and a z3 variable with its binding."""
    yield v, []
    yield z3.BitVecVal(v, WIDTH), []
    var = z3.BitVec(name, WIDTH)
    yield var, [(var, z3.BitVecVal(v, WIDTH))]


def _bool_forms(v: bool, name: str) -> Iterator[tuple[Any, list[tuple[Any, Any]]]]:
    yield v, []
    yield z3.BoolVal(v), []
    var = z3.Bool(name)
    yield var, [(var, z3.BoolVal(v))]


def value(x: Any, env: list[tuple[Any, Any]]) -> Any:
    """A symbolic result with the variables bound: a Python bool or int (mod 2**WIDTH),
    or a tuple or dataclass of them."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return type(x)(*(value(getattr(x, f.name), env) for f in dataclasses.fields(x)))
    if isinstance(x, tuple):
        return tuple(value(y, env) for y in x)
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x % MOD
    t = z3.simplify(z3.substitute(as_term(x), *env)) if env else z3.simplify(as_term(x))
    if z3.is_bool(t):
        assert z3.is_true(t) or z3.is_false(t), t
        return z3.is_true(t)
    assert z3.is_bv_value(t), t
    return t.as_long()


def concrete(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(concrete(y) for y in x)
    if isinstance(x, int) and not isinstance(x, bool):
        return x % MOD
    return x


def _agree(op: Callable[..., Any], forms: list[Callable[[Any, str], Iterator[tuple[Any, Any]]]],
           domains: list[Any]) -> int:
    """Every combination of values and forms; the number of cases checked."""
    n = 0
    for vals in itertools.product(*domains):
        choices = [list(f(v, f"v{k}")) for k, (f, v) in enumerate(zip(forms, vals, strict=True))]
        want = concrete(op(CONCRETE, *vals))
        for combo in itertools.product(*choices):
            env = [b for _, bs in combo for b in bs]
            got = value(op(SYMBOLIC, *(a for a, _ in combo)), env)
            assert got == want, (op, vals, [a for a, _ in combo], got, want)
            n += 1
    return n


BOOLS = [False, True]
INT_OPS = {
    "eq": lambda L, a, b: L.eq(a, b),
    "ne": lambda L, a, b: L.ne(a, b),
    "lt": lambda L, a, b: L.lt(a, b),
    "le": lambda L, a, b: L.le(a, b),
    "add": lambda L, a, b: L.add(a, b),
    "sub": lambda L, a, b: L.sub(a, b),
}


@pytest.mark.parametrize("name", list(INT_OPS))
def test_int_operations(name: str) -> None:
    assert _agree(INT_OPS[name], [_int_forms, _int_forms], [WORDS, WORDS]) == 64 * 9


BOOL_OPS = {
    "not_": (1, lambda L, a: L.not_(a)),
    "and_": (2, lambda L, a, b: L.and_(a, b)),
    "or_": (2, lambda L, a, b: L.or_(a, b)),
    "implies": (2, lambda L, a, b: L.implies(a, b)),
    "eq": (2, lambda L, a, b: L.eq(a, b)),
    "ne": (2, lambda L, a, b: L.ne(a, b)),
    "all_": (3, lambda L, a, b, c: L.all_([a, b, c])),
    "any_": (3, lambda L, a, b, c: L.any_([a, b, c])),
    "count": (3, lambda L, a, b, c: L.count([a, b, c])),
}


@pytest.mark.parametrize("name", list(BOOL_OPS))
def test_bool_operations(name: str) -> None:
    arity, op = BOOL_OPS[name]
    assert _agree(op, [_bool_forms] * arity, [BOOLS] * arity) == 6 ** arity


def test_empty_conjunction_and_disjunction() -> None:
    assert SYMBOLIC.all_([]) is True and SYMBOLIC.any_([]) is False
    assert SYMBOLIC.count([]) == 0


@dataclasses.dataclass(frozen=True)
class Pair:
    a: Any
    b: Any


def test_ite_on_ints_tuples_and_dataclasses() -> None:
    def on_ints(L: Any, c: bool, a: int, b: int) -> Any:
        return L.ite(c, a, b)

    assert _agree(on_ints, [_bool_forms, _int_forms, _int_forms], [BOOLS, VALUES, VALUES])

    def on_tuples(L: Any, c: bool, a: int, b: int) -> Any:
        return L.ite(c, (a, b, 3), (b, a, 3))

    assert _agree(on_tuples, [_bool_forms, _int_forms, _int_forms], [BOOLS, VALUES, VALUES])

    def on_dataclasses(L: Any, c: bool, a: int, b: int) -> Any:
        got = L.ite(c, Pair(a, (b, a)), Pair(b, (a, b)))
        return (got.a, *got.b)

    assert _agree(on_dataclasses, [_bool_forms, _int_forms, _int_forms], [BOOLS, VALUES, VALUES])


def test_ite_keeps_what_both_branches_share() -> None:
    """An untouched field keeps its identity (effects rely on it to stay small)."""
    shared = (1, 2)
    c = z3.Bool("c")
    assert SYMBOLIC.ite(c, shared, shared) is shared
    assert SYMBOLIC.ite(c, 3, 3) == 3 and isinstance(SYMBOLIC.ite(c, 3, 3), int)
    assert SYMBOLIC.ite(c, True, True) is True
    assert z3.is_expr(SYMBOLIC.ite(c, 1, 2))


def test_select_store_case_and_when() -> None:
    tup = (5, 6, 7, 8)

    def select(L: Any, i: int) -> Any:
        return L.select(tup, i)

    def store(L: Any, i: int, v: int) -> Any:
        return L.store(tup, i, v)

    def case(L: Any, i: int) -> Any:
        return L.case(i, list(VALUES), lambda k: (k + 1, tup[k]))

    assert _agree(select, [_int_forms], [VALUES]) == 12
    assert _agree(store, [_int_forms, _int_forms], [VALUES, VALUES]) == 144
    assert _agree(case, [_int_forms], [VALUES]) == 12

    def when(L: Any, c: bool, a: int) -> Any:
        return L.when(c, (a, 1), lambda s: (s[1], L.add(s[0], 1)))

    assert _agree(when, [_bool_forms, _int_forms], [BOOLS, VALUES]) == 2 * 4 * 9


def test_a_bool_is_no_bit_vector() -> None:
    with pytest.raises(TypeError, match="bool where a bit-vector"):
        SYMBOLIC.add(True, z3.BitVec("n", WIDTH))


def test_the_check_reports_a_wrong_operation() -> None:
    """The agreement check fails on an operation that differs, even on one value."""

    def wrong(L: Any, i: int) -> Any:  # index 0 read wrongly in the symbolic world
        return L.select((5, 6, 7, 8) if L is CONCRETE else (6, 6, 7, 8), i)

    with pytest.raises(AssertionError):
        _agree(wrong, [_int_forms], [VALUES])
