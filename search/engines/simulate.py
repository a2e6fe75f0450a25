"""Random simulation (TLC's -simulate): random walks over enabled instances."""

from __future__ import annotations

import random
from collections.abc import Iterator
from operator import attrgetter
from typing import Any

from model.actions import Instance
from model.enabled import EnabledCache
from model.state import State, leaves
from model.system import System

# states remembered by a walker; when full, forgotten all at once (speed, never answers)
STATE_LIMIT = 1 << 16
UNASKED, DISABLED, ENABLED = 0, 1, 2


class _Seen:
    """What a walker knows about one state: each instance's guard, once asked (a byte:
    UNASKED, DISABLED or ENABLED, small enough to remember many states), and the
    successors it stepped to, with what it knows about those."""

    __slots__ = ("guards", "state", "succ")

    def __init__(self, state: State, n: int) -> None:
        self.state = state
        self.guards = bytearray(n)
        self.succ: dict[int, _Seen] = {}


class Walker:
    """Uniform choice among the enabled instances of each state, seeded.

    Instances are drawn at random until one is enabled (the same uniform distribution
    as drawing from the enabled set, at a fraction of the cost when many are enabled);
    after `patience` misses the state is examined exhaustively, so a state with few
    enabled instances, or none, is handled exactly.

    Speed, none of which changes a walk: guards and effects go through an `EnabledCache`
    (evaluated again only when a field they read holds a value not seen with them); and
    walks at a small scope revisit states all the time (every walk starts at boot), so
    each state visited is remembered, keyed by the values of all its fields, with the
    guard answers and successors found there. A remembered answer is the answer of the
    same pure function on an equal state.
    """

    def __init__(self, system: System, seed: int = 0, patience: int = 32) -> None:
        self.system = system
        self.rng = random.Random(seed)
        self.patience = patience
        self.cache = EnabledCache(system.instances, system.ctx)
        # every field of a state in one C call: the key of the states remembered
        paths = {p.rsplit(".", 1)[0] for p, _ in leaves(system.initial()) if p.count(".") >= 2}
        paths |= {p for p, _ in leaves(system.initial()) if p.count(".") == 1}
        self._key = attrgetter(*sorted(paths))
        self._seen: dict[Any, _Seen] = {}

    def _visit(self, s: State) -> _Seen:
        key = self._key(s)
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) >= STATE_LIMIT:
                self._seen.clear()
            seen = self._seen[key] = _Seen(s, len(self.system.instances))
        return seen

    def choose(self, s: State) -> Instance | None:
        k = self._choose(self._visit(s))
        return None if k is None else self.system.instances[k]

    def _choose(self, seen: _Seen) -> int | None:
        n, guards, s, is_enabled = len(self.system.instances), seen.guards, seen.state, \
            self.cache.is_enabled
        # rng.randrange(n) is rng._randbelow(n): getrandbits(n.bit_length()) until below
        # n. Done inline: the same numbers at a third of the cost.
        bits, getrandbits = n.bit_length(), self.rng.getrandbits
        for _ in range(self.patience):
            k = getrandbits(bits)
            while k >= n:
                k = getrandbits(bits)
            g = guards[k]
            if g == UNASKED:
                g = guards[k] = ENABLED if is_enabled(k, s) else DISABLED
            if g == ENABLED:
                return k
        enabled = []
        for k in range(n):
            g = guards[k]
            if g == UNASKED:
                g = guards[k] = ENABLED if is_enabled(k, s) else DISABLED
            if g == ENABLED:
                enabled.append(k)
        return enabled[self.rng.randrange(len(enabled))] if enabled else None

    def walk(self, length: int) -> Iterator[tuple[Instance, State]]:
        """One walk from the initial state: (instance, state after it) per step."""
        seen = self._visit(self.system.initial())
        insts, step = self.system.instances, self.cache.step
        for _ in range(length):
            k = self._choose(seen)
            if k is None:
                return
            nxt = seen.succ.get(k)
            if nxt is None:
                nxt = seen.succ[k] = self._visit(step(seen.state, k))
            seen = nxt
            yield insts[k], seen.state
