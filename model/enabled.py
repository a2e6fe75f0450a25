"""Concrete guards and effects, remembered by the values of what they read.

A guard or an effect is a pure, deterministic function of the state (parameters and
context are fixed per instance), and it reads only a little of it: most guards look at
a few elements of `pages.kind` and `areas.owner`, an effect at the fields it rebuilds. So
each evaluation is run once with its reads recorded, and its answer is kept in a table
keyed by the values of exactly what it read:

- a guard's answer is its truth value; its reads are recorded per element of a tuple
  field (`pages.kind[2]`), or per whole field where it iterates, compares or searches one;
- an effect's answer is the fields it wrote, with their new values; its reads are
  recorded per field (effects rebuild whole tuples, so elements would gain little).

**Why this is exact.** Let an evaluation on state `s` read the paths R (in whatever order
its control flow took) and answer A. On any state `t` where R holds the same values, the
evaluation takes the same branches, reads the same paths and computes the same values,
because everything it computes comes from those reads, its parameters, the context and
constants: it answers A again. Lookups compare values with `==` (fields are tuples of
ints or of bools, one type each, and ints). Reads are recorded by stand-ins for the
state's parts (and, in guards, for its tuples) that note every way of looking at a value.

For an effect, "the fields it wrote" must not include a field it merely copied (then the
answer would carry `s`'s value of it to states where it differs), nor miss a field it
wrote with a value equal to the old one without reading it (a constant). So the effect
runs on a stand-in whose tuples and ints are new objects, equal to the old ones and held
nowhere else: a field of the result that still holds that object was copied; any other
field not read was written. Fields that cannot be copied so (a bool, the empty tuple) are
always part of the key, where an equal value is then no write.

An instance may have several tables with different read sets (a guard that stops at its
first false conjunct reads less); a hit in any of them is sound by the argument above.
Tables are bounded: a full one is emptied, which changes speed, never an answer.
`tests/test_stepcache.py` checks guards, effects and whole walks against the plain
interpretation under every profile.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from model.actions import Ctx, Instance
from model.logic import CONCRETE
from model.state import State, evolve, initial_state

PARTS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(State))

# a table holds at most this many entries; a full one is emptied (speed, never answers)
TABLE_LIMIT = 1 << 14

Getter = Callable[[State], Any]


def _no_fields(s: State) -> tuple[()]:
    return ()


_GETTERS: dict[tuple[str, ...], Getter] = {}


def _key_getter(paths: tuple[str, ...]) -> Getter:
    """A function that reads every field or element of `paths` from a state: the key of
    a table. Whole fields only: one C call (attrgetter); with elements (`pages.kind[2]`),
    a compiled lambda. The text compiled is made of dataclass field names and ints from
    `_reads`, nothing else."""
    if not paths:
        return _no_fields
    if not any("[" in p for p in paths):
        return attrgetter(*paths)
    g = _GETTERS.get(paths)
    if g is None:
        for p in paths:
            if not _PATH.fullmatch(p):
                raise ValueError(f"not a field path: {p!r}")
        g = _GETTERS[paths] = eval(f"lambda s: ({''.join(f's.{p}, ' for p in paths)})")
    return g


_PATH = re.compile(r"[a-z_]+\.[a-z_]+(\[[0-9]+\])?")


def _reads(read: list[str]) -> tuple[str, ...]:
    """The paths a guard read, each once, in first-read order; an element of a field also
    read whole is dropped (the whole is in the key)."""
    paths = tuple(dict.fromkeys(read))
    whole = {p for p in paths if "[" not in p}
    return tuple(p for p in paths if "[" not in p or p.split("[", 1)[0] not in whole)


class _TupleRecording(tuple):
    """Stands in for one tuple field inside a guard and notes the elements read.

    Indexing notes the element (`pages.kind[2]`), a slice each element in it; anything
    else a guard can do with a tuple (iterate it, compare it, search it, add to it) notes
    the whole field. CPython's fast paths for tuples (unpacking, `list(t)`, `*t`, the
    specialised `t[i]`) test for an exact tuple, so on this subclass they go through the
    methods below. `len` is not a read: every state of a system has the same shape."""

    def __getitem__(self, i: Any) -> Any:
        d = self.__dict__
        if type(i) is int:
            d["_r"].append(f"{d['_n']}[{i + len(self) if i < 0 else i}]")
            return tuple.__getitem__(self, i)
        if type(i) is slice:
            d["_r"].extend(f"{d['_n']}[{j}]" for j in range(*i.indices(len(self))))
            return tuple(tuple.__getitem__(self, i))
        return self._whole(tuple.__getitem__, i)

    def _whole(self, method: Any, *args: Any) -> Any:
        d = self.__dict__
        d["_r"].append(d["_n"])
        return method(d["_v"], *args)

    def __iter__(self) -> Any:
        return self._whole(tuple.__iter__)

    def __reversed__(self) -> Any:
        return self._whole(reversed)

    def __contains__(self, x: object) -> bool:
        return self._whole(tuple.__contains__, x)

    def __eq__(self, x: object) -> bool:
        return self._whole(tuple.__eq__, x)

    def __ne__(self, x: object) -> bool:
        return self._whole(tuple.__ne__, x)

    def __lt__(self, x: Any) -> bool:
        return self._whole(tuple.__lt__, x)

    def __le__(self, x: Any) -> bool:
        return self._whole(tuple.__le__, x)

    def __gt__(self, x: Any) -> bool:
        return self._whole(tuple.__gt__, x)

    def __ge__(self, x: Any) -> bool:
        return self._whole(tuple.__ge__, x)

    def __hash__(self) -> int:
        return self._whole(tuple.__hash__)

    def __add__(self, x: Any) -> Any:
        return self._whole(tuple.__add__, x)

    def __radd__(self, x: Any) -> Any:
        return x + self._whole(tuple.__add__, ())

    def __mul__(self, n: Any) -> Any:
        return self._whole(tuple.__mul__, n)

    __rmul__ = __mul__

    def count(self, x: Any) -> int:
        return self._whole(tuple.count, x)

    def index(self, *args: Any) -> int:
        return self._whole(tuple.index, *args)

    def __repr__(self) -> str:
        return self._whole(tuple.__repr__)

    def __reduce__(self) -> Any:
        return self._whole(tuple.__reduce__)


def _tuple_recording(value: tuple[Any, ...], path: str, read: list[str]) -> _TupleRecording:
    rec = _TupleRecording(value)
    rec.__dict__["_v"] = value  # the plain tuple: tuple(rec) would iterate rec itself
    rec.__dict__["_n"] = path
    rec.__dict__["_r"] = read
    return rec


class _PartRecording:
    """Stands in for one part of the state (`s.pages`) inside a guard and notes the
    fields read: a tuple field by its elements (`_TupleRecording`), any other whole. The
    first read of a field goes through `__getattr__`, which keeps the stand-in of its
    value: later reads of it are plain attribute lookups."""

    def __init__(self, part: Any, name: str, read: list[str]) -> None:
        self.__dict__["_p"] = part
        self.__dict__["_n"] = name
        self.__dict__["_r"] = read

    def __getattr__(self, field: str) -> Any:
        d = self.__dict__
        value = getattr(d["_p"], field)  # AttributeError for a field that does not exist
        path = f"{d['_n']}.{field}"
        if type(value) is tuple:
            value = _tuple_recording(value, path, d["_r"])
        else:
            d["_r"].append(path)
        d[field] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a guard may not write the state")

    def __eq__(self, other: object) -> bool:
        # comparing whole parts would read every field unrecorded
        raise TypeError("a guard may not compare whole parts of the state")

    __hash__ = None  # type: ignore[assignment]


class _Recording:
    """Stands in for a State inside a guard and notes which fields the guard reads."""

    def __init__(self, s: State) -> None:
        self.__dict__["_s"] = s
        self.__dict__["read"] = []

    def __getattr__(self, name: str) -> Any:
        if name in PARTS:
            d = self.__dict__
            rec = _PartRecording(getattr(d["_s"], name), name, d["read"])
            d[name] = rec
            return rec
        raise AttributeError(f"a guard may only read the parts of the state, not {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a guard may not write the state")


def _recording_class(cls: type, part: str, fields: frozenset[str], read: list[str]) -> type:
    """A subclass of the part's dataclass whose field reads are appended to `read`.

    Effects build their result with `evolve`, which copies `obj.__dict__` into a new
    object of `type(obj)`: so the stand-in must be a real instance of the part's class,
    and every part an effect derives from it is one as well and keeps recording."""

    def __getattribute__(self: Any, name: str) -> Any:
        if name in fields:
            read.append(f"{part}.{name}")
        return object.__getattribute__(self, name)

    return type(f"Recording{cls.__name__}", (cls,), {"__getattribute__": __getattribute__,
                                                      "__module__": __name__})


class _FreshInt(int):
    """An int equal to a field's value but no other object: see `EnabledCache._stand_in`."""

    __slots__ = ()


def _freshable(v: Any) -> bool:
    return (type(v) is tuple and len(v) > 0) or type(v) is int


class _Table:
    """The entries of one guard or effect that share a read set."""

    __slots__ = ("answers", "get", "paths")

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self.get = _key_getter(paths)
        self.answers: dict[Any, Any] = {}

    def put(self, key: Any, answer: Any) -> None:
        if len(self.answers) >= TABLE_LIMIT:
            self.answers.clear()
        self.answers[key] = answer


def _table_for(tables: list[_Table], paths: tuple[str, ...]) -> _Table:
    for t in tables:
        if t.paths == paths:
            return t
    t = _Table(paths)
    tables.append(t)
    return t


# an effect's answer: per part written, the fields written and their new values
Writes = tuple[tuple[str, dict[str, Any]], ...]


class EnabledCache:
    """Guards and effects of `instances` on concrete states, memoised as described above."""

    def __init__(self, instances: list[Instance], ctx: Ctx) -> None:
        self.instances = instances
        self.ctx = ctx
        self.guards: list[list[_Table]] = [[] for _ in instances]
        self.effects: list[list[_Table]] = [[] for _ in instances]
        self.hits = self.misses = 0
        self.effect_hits = self.effect_misses = 0
        self._read: list[str] = []
        self._parts: dict[str, tuple[type, tuple[str, ...]]] = {}
        template = _template(ctx)
        for name in PARTS:
            cls = type(getattr(template, name))
            fields = tuple(f.name for f in dataclasses.fields(cls))
            self._parts[name] = (_recording_class(cls, name, frozenset(fields), self._read),
                                 fields)
        # fields a stand-in cannot hold a new copy of (see `_stand_in`): always keyed
        self._pinned = tuple(f"{name}.{f}" for name in PARTS
                             for f in self._parts[name][1]
                             if not _freshable(getattr(getattr(template, name), f)))

    # guards

    def is_enabled(self, k: int, s: State) -> bool:
        """Whether instance number `k` is enabled in `s`."""
        for t in self.guards[k]:
            r = t.answers.get(t.get(s))
            if r is not None:
                self.hits += 1
                return r
        self.misses += 1
        rec = _Recording(s)
        result = bool(self.instances[k].guard(rec, self.ctx, CONCRETE))  # type: ignore[arg-type]
        t = _table_for(self.guards[k], _reads(rec.read))
        t.put(t.get(s), result)
        return result

    def enabled(self, s: State) -> list[Instance]:
        return [inst for k, inst in enumerate(self.instances) if self.is_enabled(k, s)]

    # effects

    def step(self, s: State, k: int) -> State:
        """The state after instance number `k` in `s` (its guard is the caller's business,
        as in `System.step`): equal to `System.step(s, instances[k])`."""
        for t in self.effects[k]:
            w = t.answers.get(t.get(s))
            if w is not None:
                self.effect_hits += 1
                return _apply(s, w)
        self.effect_misses += 1
        read = self._read
        read.clear()
        fresh = {name: self._stand_in(name, getattr(s, name)) for name in PARTS}
        stand_in = evolve(s, **fresh)
        out = self.instances[k].effect(stand_in, self.ctx, CONCRETE)
        read.extend(self._pinned)
        paths = tuple(dict.fromkeys(read))
        read.clear()
        w = self._writes(s, fresh, out, frozenset(paths))
        t = _table_for(self.effects[k], paths)
        t.put(t.get(s), w)
        return _apply(s, w)

    def _stand_in(self, name: str, part: Any) -> Any:
        """A recording copy of `part` whose tuples are new objects equal to the old ones.

        Why new objects: an effect that never read a field may still write it, with a
        constant or another field's value, and that value may be the very object the
        field held (a shared constant). Only the copy made here cannot come from anywhere
        else: a field that still holds it was copied, not written. Fields that cannot be
        copied so (bools, the empty tuple) are always part of the key (`_pinned`)."""
        cls, fields = self._parts[name]
        new = object.__new__(cls)
        d = object.__getattribute__(new, "__dict__")
        d.update(part.__dict__)
        for f in fields:
            v = d[f]
            if type(v) is tuple and v:
                d[f] = (*v,)
            elif type(v) is int:
                d[f] = _FreshInt(v)
        return new

    def _writes(self, s: State, fresh: dict[str, Any], out: State,
                keyed: frozenset[str]) -> Writes:
        """What `out` changed with respect to `s`, field by field (read without recording:
        `__dict__` is no field). A field in the key was equal on every state the answer is
        used for, so an equal value is no write; any other field was copied only if it
        still holds the stand-in's own new object."""
        w: list[tuple[str, dict[str, Any]]] = []
        for name in PARTS:
            new_part = out.__dict__[name]
            stand_in = fresh[name]
            if new_part is stand_in:
                continue
            old = getattr(s, name).__dict__
            copied = object.__getattribute__(stand_in, "__dict__")
            new = object.__getattribute__(new_part, "__dict__")
            changed = {}
            for f in self._parts[name][1]:
                v = new[f]
                if f"{name}.{f}" in keyed:
                    if v is not old[f] and v != old[f]:
                        changed[f] = v
                elif v is not copied[f]:
                    changed[f] = int(v) if type(v) is _FreshInt else v
            if changed:
                w.append((name, changed))
        return tuple(w)


def _apply(s: State, w: Writes) -> State:
    if not w:
        return s
    return evolve(s, **{name: evolve(getattr(s, name), **fields) for name, fields in w})


def _template(ctx: Ctx) -> State:
    """A state of the bounds' shape: only the classes of its parts are read."""
    return initial_state(ctx.bounds)
