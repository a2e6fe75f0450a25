"""What an action is: a kernel function as guard + effect over a `Logic`, with a finite
parameter domain. Parameters are concrete in both interpretations."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from model.bounds import Bounds
from model.logic import Logic
from model.profiles import Flags
from model.state import State

Params = dict[str, Any]


@dataclass(frozen=True)
class Ctx:
    """Everything an action may consult that is not state: bounds, kernel flags, faults."""

    bounds: Bounds
    flags: Flags
    faults: bool = False  # page-table allocations may fail (an environment switch)

    @property
    def fail_choices(self) -> tuple[bool, ...]:
        return (False, True) if self.faults else (False,)


Guard = Callable[[State, Params, Ctx, Logic], Any]
Effect = Callable[[State, Params, Ctx, Logic], State]
Domain = Callable[[Ctx], Iterable[Params]]


@dataclass(frozen=True)
class Action:
    name: str
    subsystem: str
    params: tuple[str, ...]
    domain: Domain
    guard: Guard
    effect: Effect
    doc: str = field(default="")
    # A cheap conjunct of the guard that picks out the instance's object (its ref, prog
    # or area): concretely it is tried first, so most disabled instances cost one lookup.
    pre: Guard | None = None
    # Parameters the model chooses when a scenario leaves them out: the slot a new object
    # lands in (lowest free, as the allocator would), a fault the environment picks.
    implicit: tuple[str, ...] = ()
    # The parameter a scenario's `name = call(...)` binds: the object the call returns.
    returns: str | None = None
    # The guard's conjuncts in kernel terms, in order: (sentence, conjunct). When given,
    # the guard is their conjunction and a false guard is explained by the first sentence.
    checks: tuple[tuple[str, Guard], ...] = ()
    # False for the calls only scenarios make: the built-in search keeps its own drivers
    # and loaders, which follow the callers' protocols.
    builtin: bool = True

    def why_not(self, s: State, p: Params, c: Ctx, L: Logic) -> str | None:
        """The sentence of the first false check, or None (no sentences, or all hold)."""
        if self.pre is not None and not self.pre(s, p, c, L) and not self.checks:
            return None
        for sentence, g in self.checks:
            if not g(s, p, c, L):
                return sentence.format(**p)
        return None

    def instances(self, c: Ctx) -> list[Instance]:
        out = []
        for p in self.domain(c):
            if tuple(p) != self.params:
                raise ValueError(f"{self.name}: domain yields {tuple(p)}, declared {self.params}")
            out.append(Instance(self, tuple(p.items())))
        return out


@dataclass(frozen=True)
class Instance:
    """One action with all its parameters fixed: what a step of any engine picks."""

    action: Action
    items: tuple[tuple[str, Any], ...]
    params: Params = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        # built once: guards run hundreds of thousands of times a second
        object.__setattr__(self, "params", dict(self.items))

    @property
    def name(self) -> str:
        return self.action.name

    def guard(self, s: State, c: Ctx, L: Logic) -> Any:
        a, p = self.action, self.params
        if a.pre is None:
            return a.guard(s, p, c, L)
        if not L.symbolic:
            return bool(a.pre(s, p, c, L)) and bool(a.guard(s, p, c, L))
        return L.and_(a.pre(s, p, c, L), a.guard(s, p, c, L))

    def effect(self, s: State, c: Ctx, L: Logic) -> State:
        return self.action.effect(s, self.params, c, L)

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                         for k, v in self.items)
        return f"{self.name}({args})"


REGISTRY: list[Action] = []


def action(
    subsystem: str, params: tuple[str, ...], domain: Domain, guard: Guard, pre: Guard | None = None,
    implicit: tuple[str, ...] = (), returns: str | None = None,
) -> Callable[[Effect], Effect]:
    """Register `effect` as an action named after it; its docstring is the action's doc.
    The action's guard is `pre and guard`."""

    def deco(effect: Effect) -> Effect:
        name = effect.__name__.removesuffix("_")
        REGISTRY.append(Action(name, subsystem, params, domain, guard, effect,
                               (effect.__doc__ or "").strip(), pre, implicit, returns))
        return effect

    return deco


def call(
    subsystem: str, params: tuple[str, ...], domain: Domain, *checks: tuple[str, Guard],
    implicit: tuple[str, ...] = (), returns: str | None = None, name: str | None = None,
) -> Callable[[Effect], Effect]:
    """Register `effect` as a call only scenarios make (not in the built-in search). Its
    guard is the conjunction of `checks`, each a (sentence, conjunct) pair: only what the
    kernel itself forbids (a BUG, a NULL pointer, freeing what was never allocated)."""

    def guard(s: State, p: Params, c: Ctx, L: Logic) -> Any:
        return L.and_(*(g(s, p, c, L) for _, g in checks)) if checks else True

    def deco(effect: Effect) -> Effect:
        REGISTRY.append(Action(name or effect.__name__.removesuffix("_"), subsystem, params,
                               domain, guard, effect, (effect.__doc__ or "").strip(), None,
                               implicit, returns, tuple(checks), builtin=False))
        return effect

    return deco


def lowest_free(k: int, free: Callable[[int], Any], L: Logic) -> Any:
    """Slot `k` is the lowest one for which `free(slot)` holds: programs and driver
    pointers are interchangeable slots, so the model always takes the lowest free one."""
    return L.and_(free(k), L.not_(L.any_(free(j) for j in range(k))))


def product(**domains: Iterable[Any]) -> list[Params]:
    """Every combination of the named finite domains, in a fixed order."""
    out: list[Params] = [{}]
    for name, values in domains.items():
        vals = list(values)
        out = [{**p, name: v} for p in out for v in vals]
    return out
