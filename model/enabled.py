"""Which instances are enabled in a concrete state, remembering guard results across steps.

An effect rebuilds only the parts of the state it writes (`evolve` keeps the others by
identity), and most guards read one or two parts. So each guard result is kept with the
part objects the guard read, and reused while every one of them is still the very same
object. The parts read are recorded on every evaluation, so the cache is exact: a guard
is re-evaluated whenever anything it could have seen has changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from model.actions import Ctx, Instance
from model.logic import CONCRETE
from model.state import State

PARTS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(State))


class _Recording:
    """Stands in for a State inside a guard and notes which parts the guard reads."""

    __slots__ = ("_s", "read")

    def __init__(self, s: State) -> None:
        self._s = s
        self.read: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in PARTS:
            self.read.append(name)
            return getattr(self._s, name)
        raise AttributeError(f"a guard may only read the parts of the state, not {name!r}")


class EnabledCache:
    def __init__(self, instances: list[Instance], ctx: Ctx) -> None:
        self.instances = instances
        self.ctx = ctx
        # per instance: (names of the parts read, the part objects then, the result)
        self.memo: list[tuple[tuple[str, ...], tuple[Any, ...], bool] | None] = [None] * len(instances)
        self.hits = self.misses = 0

    def is_enabled(self, k: int, s: State) -> bool:
        """Whether instance number `k` is enabled in `s`."""
        m = self.memo[k]
        if m is not None:
            names, objs, result = m
            for n, o in zip(names, objs, strict=True):
                if getattr(s, n) is not o:
                    break
            else:
                self.hits += 1
                return result
        self.misses += 1
        rec = _Recording(s)
        result = bool(self.instances[k].guard(rec, self.ctx, CONCRETE))  # type: ignore[arg-type]
        names = tuple(dict.fromkeys(rec.read))
        self.memo[k] = (names, tuple(getattr(s, n) for n in names), result)
        return result

    def enabled(self, s: State) -> list[Instance]:
        return [inst for k, inst in enumerate(self.instances) if self.is_enabled(k, s)]
