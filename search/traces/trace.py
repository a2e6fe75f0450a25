"""Counterexample traces: a facade over the modules that do the work.

- `search.traces.naming`: naming state fields and values as the kernel story does; state diffs.
- `search.traces.itf`: the `Trace` record, its ITF JSON form, atomic save, validated load.
- `search.traces.replay`: re-executing a trace under its own or another kernel, and why it no
  longer reproduces.

Every public name importable from here before the split still is.
"""

from __future__ import annotations

from search.traces.itf import (
    FORMAT,
    FORMAT_VERSION,
    META_KEYS,
    STATE_META_KEYS,
    STATE_VARS,
    Step,
    Trace,
    TraceError,
    allocheck_version,
    base_name,
    dumps,
    find_instances,
    load,
    loads,
    lookup,
    param_domains,
    save,
    to_itf,
    trace_from_steps,
    trace_identity,
)
from search.traces.naming import (
    ENUM_NAMES,
    Change,
    field_of,
    format_call,
    format_changes,
    leaf_label,
    state_diff,
    value_label,
)
from search.traces.replay import ReplayReport, explain_guard, guard_conjuncts, replay

__all__ = [
    "ENUM_NAMES",
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEYS",
    "STATE_META_KEYS",
    "STATE_VARS",
    "Change",
    "ReplayReport",
    "Step",
    "Trace",
    "TraceError",
    "allocheck_version",
    "base_name",
    "dumps",
    "explain_guard",
    "field_of",
    "find_instances",
    "format_call",
    "format_changes",
    "guard_conjuncts",
    "leaf_label",
    "load",
    "loads",
    "lookup",
    "param_domains",
    "replay",
    "save",
    "state_diff",
    "to_itf",
    "trace_from_steps",
    "trace_identity",
    "value_label",
]
