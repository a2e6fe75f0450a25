"""The few operations whose meaning differs between the concrete and the symbolic world.

Guards, effects and invariants are plain Python functions over a `Logic` object. Action
parameters are always concrete, so Python `if` on a parameter is fine; anything that
depends on the *state* goes through these operations.

`Concrete` computes with Python bools and ints. `Symbolic` builds z3 terms: every int
field is a bit-vector of `WIDTH` bits (values are small and bounded by the guards), every
bool field a z3 Bool. `Symbolic` folds constants eagerly, because most operands are
concrete parameters and a term that never reaches z3 is the cheapest term of all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import z3

WIDTH = 8  # bits of every int field in the symbolic world; guards keep values below 2**WIDTH


class Logic(Protocol):
    """What a guard, effect or invariant may do with a state-dependent value."""

    symbolic: bool

    def ite(self, c: Any, a: Any, b: Any) -> Any: ...
    def and_(self, *xs: Any) -> Any: ...
    def or_(self, *xs: Any) -> Any: ...
    def not_(self, x: Any) -> Any: ...
    def implies(self, a: Any, b: Any) -> Any: ...
    def eq(self, a: Any, b: Any) -> Any: ...
    def ne(self, a: Any, b: Any) -> Any: ...
    def lt(self, a: Any, b: Any) -> Any: ...
    def le(self, a: Any, b: Any) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def sub(self, a: Any, b: Any) -> Any: ...
    def all_(self, xs: Iterable[Any]) -> Any: ...
    def any_(self, xs: Iterable[Any]) -> Any: ...
    def select(self, tup: Sequence[Any], idx: Any) -> Any: ...
    def store(self, tup: tuple[Any, ...], idx: Any, val: Any) -> tuple[Any, ...]: ...
    def count(self, xs: Iterable[Any]) -> Any: ...
    def when(self, c: Any, s: Any, fn: Any) -> Any: ...
    def case(self, value: Any, domain: Sequence[int], fn: Any) -> Any: ...


class Concrete:
    """Plain Python values: hypothesis, replay, BFS and narration run on this."""

    symbolic = False

    def ite(self, c: Any, a: Any, b: Any) -> Any:
        return a if c else b

    def and_(self, *xs: Any) -> bool:
        return all(xs)

    def or_(self, *xs: Any) -> bool:
        return any(xs)

    def not_(self, x: Any) -> bool:
        return not x

    def implies(self, a: Any, b: Any) -> bool:
        return (not a) or bool(b)

    def eq(self, a: Any, b: Any) -> bool:
        return a == b

    def ne(self, a: Any, b: Any) -> bool:
        return a != b

    def lt(self, a: Any, b: Any) -> bool:
        return a < b

    def le(self, a: Any, b: Any) -> bool:
        return a <= b

    def add(self, a: Any, b: Any) -> int:
        return a + b

    def sub(self, a: Any, b: Any) -> int:
        return a - b

    def all_(self, xs: Iterable[Any]) -> bool:
        return all(xs)

    def any_(self, xs: Iterable[Any]) -> bool:
        return any(xs)

    def select(self, tup: Sequence[Any], idx: Any) -> Any:
        return tup[idx]

    def store(self, tup: tuple[Any, ...], idx: Any, val: Any) -> tuple[Any, ...]:
        return (*tup[:idx], val, *tup[idx + 1 :])

    def count(self, xs: Iterable[Any]) -> int:
        return sum(1 for x in xs if x)

    def when(self, c: Any, s: Any, fn: Any) -> Any:
        """`fn(s)` if `c` else `s`: a state-dependent branch of an effect."""
        return fn(s) if c else s

    def case(self, value: Any, domain: Sequence[int], fn: Any) -> Any:
        """`fn(value)` for a state-dependent index `value` known to lie in `domain`."""
        return fn(value)


def _is_py(x: Any) -> bool:
    return isinstance(x, bool | int)


def _bv(x: Any) -> Any:
    if isinstance(x, bool):
        raise TypeError("a bool where a bit-vector was expected")
    return z3.BitVecVal(x, WIDTH) if isinstance(x, int) else x


def as_term(x: Any) -> Any:
    """A leaf as a z3 term, whether it is already one or a Python constant."""
    if isinstance(x, bool):
        return z3.BoolVal(x)
    if isinstance(x, int):
        return z3.BitVecVal(x, WIDTH)
    return x


class Symbolic:
    """z3 terms over fixed-width bit-vectors (QF_BV), folding concrete operands."""

    symbolic = True

    def ite(self, c: Any, a: Any, b: Any) -> Any:
        if a is b:
            return a
        if isinstance(c, bool):
            return a if c else b
        if z3.is_true(c):
            return a
        if z3.is_false(c):
            return b
        if dataclasses.is_dataclass(a) and not isinstance(a, type):
            changes = {}
            for f in dataclasses.fields(a):
                va, vb = getattr(a, f.name), getattr(b, f.name)
                changes[f.name] = self.ite(c, va, vb)
            return dataclasses.replace(a, **changes)
        if isinstance(a, tuple):
            return tuple(self.ite(c, x, y) for x, y in zip(a, b, strict=True))
        if _is_py(a) and _is_py(b) and a == b and type(a) is type(b):
            return a
        return z3.If(c, as_term(a), as_term(b))

    def and_(self, *xs: Any) -> Any:
        return self.all_(xs)

    def or_(self, *xs: Any) -> Any:
        return self.any_(xs)

    def not_(self, x: Any) -> Any:
        if isinstance(x, bool):
            return not x
        return z3.Not(x)

    def implies(self, a: Any, b: Any) -> Any:
        return self.or_(self.not_(a), b)

    def eq(self, a: Any, b: Any) -> Any:
        if _is_py(a) and _is_py(b):
            return a == b
        if isinstance(a, bool) or isinstance(b, bool) or z3.is_bool(a) or z3.is_bool(b):
            return as_term(a) == as_term(b)
        return _bv(a) == _bv(b)

    def ne(self, a: Any, b: Any) -> Any:
        return self.not_(self.eq(a, b))

    def lt(self, a: Any, b: Any) -> Any:
        if _is_py(a) and _is_py(b):
            return a < b
        return z3.ULT(_bv(a), _bv(b))

    def le(self, a: Any, b: Any) -> Any:
        if _is_py(a) and _is_py(b):
            return a <= b
        return z3.ULE(_bv(a), _bv(b))

    def add(self, a: Any, b: Any) -> Any:
        if _is_py(a) and _is_py(b):
            return a + b
        return _bv(a) + _bv(b)

    def sub(self, a: Any, b: Any) -> Any:
        if _is_py(a) and _is_py(b):
            return a - b
        return _bv(a) - _bv(b)

    def all_(self, xs: Iterable[Any]) -> Any:
        terms = []
        for x in xs:
            if isinstance(x, bool):
                if not x:
                    return False
                continue
            if z3.is_false(x):
                return False
            if z3.is_true(x):
                continue
            terms.append(x)
        if not terms:
            return True
        return terms[0] if len(terms) == 1 else z3.And(*terms)

    def any_(self, xs: Iterable[Any]) -> Any:
        terms = []
        for x in xs:
            if isinstance(x, bool):
                if x:
                    return True
                continue
            if z3.is_true(x):
                return True
            if z3.is_false(x):
                continue
            terms.append(x)
        if not terms:
            return False
        return terms[0] if len(terms) == 1 else z3.Or(*terms)

    def select(self, tup: Sequence[Any], idx: Any) -> Any:
        if isinstance(idx, int):
            return tup[idx]
        out = tup[-1]
        for i in range(len(tup) - 2, -1, -1):
            out = self.ite(self.eq(idx, i), tup[i], out)
        return out

    def store(self, tup: tuple[Any, ...], idx: Any, val: Any) -> tuple[Any, ...]:
        if isinstance(idx, int):
            return (*tup[:idx], val, *tup[idx + 1 :])
        return tuple(self.ite(self.eq(idx, i), val, x) for i, x in enumerate(tup))

    def count(self, xs: Iterable[Any]) -> Any:
        total: Any = 0
        for x in xs:
            total = self.add(total, self.ite(x, 1, 0))
        return total

    def when(self, c: Any, s: Any, fn: Any) -> Any:
        """Both branches, merged field by field: untouched fields keep their identity."""
        if isinstance(c, bool):
            return fn(s) if c else s
        return self.ite(c, fn(s), s)

    def case(self, value: Any, domain: Sequence[int], fn: Any) -> Any:
        """`fn(v)` for every `v` in `domain`, merged by `value == v`: a state-dependent
        index (a frame a driver holds, a program's chunk) turned into concrete ones."""
        if isinstance(value, int):
            return fn(value)
        out = fn(domain[-1])
        for v in reversed(domain[:-1]):
            out = self.ite(self.eq(value, v), fn(v), out)
        return out


CONCRETE = Concrete()
SYMBOLIC = Symbolic()
