"""The action table: every kernel function the model can take a step with.

One module per subsystem; importing them registers their actions in REGISTRY."""

from __future__ import annotations

from model.actions import (  # noqa: F401  (registration)
    bpf_pack,
    code,
    drivers,
    execmem,
    scenario_pages,
    scenario_text,
    scenario_vmalloc,
    text_users,
    vmalloc,
)
from model.actions.base import REGISTRY, Action, Ctx, Instance

# The built-in search's vocabulary: the 2022 story's drivers and loaders, which follow the
# callers' protocols. Name lookups (ITF, replay) go through it.
ACTIONS: dict[str, Action] = {a.name: a for a in REGISTRY if a.builtin}
# Everything a scenario may call: ACTIONS plus the calls real code makes. A name may be
# overloaded (the built-in `put_page(ref)` and the call `put_page(page)`): an action is
# known by its name and its parameter names together.
VOCABULARY: dict[tuple[str, tuple[str, ...]], Action] = {(a.name, a.params): a for a in REGISTRY}
assert len(VOCABULARY) == len(REGISTRY), "two actions share a name and parameter names"


def all_instances(c: Ctx, scenario: bool = False) -> list[Instance]:
    """Every (action, parameters) instance enabled by the profile's flags, in a fixed order:
    the built-in search's, or with `scenario` every call a scenario may make."""
    out: list[Instance] = []
    for a in REGISTRY:
        if a.builtin or scenario:
            out += a.instances(c)
    return out


__all__ = ["ACTIONS", "VOCABULARY", "Action", "Ctx", "Instance", "all_instances"]
