"""A trace as a networkx graph: the path of steps plus def-use edges, its causal slice,
and renderings (text, DOT, Mermaid, PNG) and an explanation of the violation.

Def-use approximation (also in counterexamples/README.md):

- A step *writes* the leaves whose values differ between the states before and after it
  (writing an equal value is not a definition).
- A step *reads* a leaf of the state before it when that leaf's value takes part in a
  computation while the step's guard and effect run on the concrete model (and, for the
  last step, the leaves the invariant's failure depends on, below). Every leaf is
  wrapped in a `_Tagged` value that records itself when compared, added, truth-tested,
  hashed or used as an index; copying a value unchanged (`list(tup)`, `replace`, `ite`'s
  untaken branch) is not a read. This is dynamic dependence: exact for the run recorded,
  blind to leaves the run skipped by short-circuit (`all`, `any` stop early), and it
  counts every comparison a guard makes, even one whose outcome did not matter. If the
  model ever rejects a tagged value, the step conservatively reads every leaf.
- The violation's own reads are by provenance (`_WhyLogic`): a false conjunction depends
  on its false terms only, so frames the invariant merely checked and found fine are not
  causes. With several independent failures, the union of all of them.
- A causal edge j -> k means step k read a leaf whose last writer was step j. The initial
  state (node 0) defines everything else and gets only the path edge.
"""

from __future__ import annotations

import io
import itertools
import operator
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

from invariants import INVARIANTS
from invariants import doc as invariant_doc
from model.logic import CONCRETE
from model.profiles import FLAG_INFO, PROFILES, SEEDED_BUGS
from model.state import State, leaves, rebuild
from model.system import System
from search.traces.naming import printable
from search.traces.trace import (
    ENUM_NAMES,
    Change,
    Trace,
    field_of,
    format_call,
    format_changes,
    leaf_label,
    lookup,
    replay,
    state_diff,
    value_label,
)

# ---------------------------------------------------------------- read sets


class _Tagged:
    """A leaf value that records its path in `log` whenever the model computes with it."""

    __slots__ = ("log", "path", "v")

    def __init__(self, v: Any, path: str, log: set[str]) -> None:
        self.v, self.path, self.log = v, path, log

    def use(self) -> Any:
        self.log.add(self.path)
        return self.v

    def __bool__(self) -> bool:
        return bool(self.use())

    def __index__(self) -> int:
        return operator.index(self.use())

    def __int__(self) -> int:
        return int(self.use())

    def __hash__(self) -> int:
        return hash(self.use())

    def __repr__(self) -> str:
        return f"_Tagged({self.v!r}, {self.path!r})"


def _plain(x: Any) -> Any:
    return x.use() if isinstance(x, _Tagged) else x


def _binary(op: Callable[[Any, Any], Any], reflected: bool = False) -> Any:
    if reflected:
        return lambda self, other: op(_plain(other), self.use())
    return lambda self, other: op(self.use(), _plain(other))


for _name, _op in {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge, "add": operator.add, "sub": operator.sub,
    "mul": operator.mul, "floordiv": operator.floordiv, "mod": operator.mod,
    "and": operator.and_, "or": operator.or_, "xor": operator.xor,
    "lshift": operator.lshift, "rshift": operator.rshift,
}.items():
    setattr(_Tagged, f"__{_name}__", _binary(_op))
    if _name not in ("eq", "ne", "lt", "le", "gt", "ge"):
        setattr(_Tagged, f"__r{_name}__", _binary(_op, reflected=True))
_Tagged.__neg__ = lambda self: -self.use()  # type: ignore[attr-defined]
_Tagged.__invert__ = lambda self: ~self.use()  # type: ignore[attr-defined]


def _tagged(s: State, log: set[str]) -> State:
    return rebuild(s, [_Tagged(v, p, log) for p, v in leaves(s)])


def reads_of(run: Callable[[State], Any], s: State) -> frozenset[str]:
    """The leaves of `s` that `run(s)` computes with (see the module docstring)."""
    log: set[str] = set()
    try:
        run(_tagged(s, log))
    except (TypeError, ValueError, AttributeError):
        return frozenset(p for p, _ in leaves(s))
    return frozenset(log)


class _Why:
    """A value with the leaves it was computed from (its provenance)."""

    __slots__ = ("t", "v")

    def __init__(self, v: Any, t: frozenset[str]) -> None:
        self.v, self.t = v, t

    def _no(self, *_: Any) -> Any:
        # Python-level use of a leaf would bypass the provenance: refuse, so that the
        # caller falls back to the conservative read set
        raise TypeError("a leaf used outside Logic")

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __index__ = __add__ = __radd__ = _no
    __hash__ = None  # type: ignore[assignment]


def _v(x: Any) -> Any:
    return x.v if isinstance(x, _Why) else x


def _t(*xs: Any) -> frozenset[str]:
    out: frozenset[str] = frozenset()
    for x in xs:
        if isinstance(x, _Why):
            out |= x.t
    return out


class _WhyLogic:
    """Concrete logic that carries provenance and keeps, for a conjunction or disjunction,
    only the operands that decided it: a false `all_` depends on its false terms alone,
    a true `any_` on its true ones. Evaluated on the final state, the invariant's result
    then names the leaves the violation depends on, not every leaf the invariant looked at."""

    symbolic = False

    def ite(self, c: Any, a: Any, b: Any) -> Any:
        chosen = a if _v(c) else b
        if isinstance(chosen, _Why | bool | int):
            return _Why(_v(chosen), _t(c, chosen))
        return chosen

    def all_(self, xs: Any) -> _Why:
        xs = list(xs)
        false = [x for x in xs if not _v(x)]
        return _Why(not false, _t(*(false or xs)))

    def any_(self, xs: Any) -> _Why:
        xs = list(xs)
        true = [x for x in xs if _v(x)]
        return _Why(bool(true), _t(*(true or xs)))

    def and_(self, *xs: Any) -> _Why:
        return self.all_(xs)

    def or_(self, *xs: Any) -> _Why:
        return self.any_(xs)

    def not_(self, x: Any) -> _Why:
        return _Why(not _v(x), _t(x))

    def implies(self, a: Any, b: Any) -> _Why:
        return self.or_(self.not_(a), b)

    def _op(self, op: Callable[[Any, Any], Any], a: Any, b: Any) -> _Why:
        return _Why(op(_v(a), _v(b)), _t(a, b))

    def eq(self, a: Any, b: Any) -> _Why:
        return self._op(operator.eq, a, b)

    def ne(self, a: Any, b: Any) -> _Why:
        return self._op(operator.ne, a, b)

    def lt(self, a: Any, b: Any) -> _Why:
        return self._op(operator.lt, a, b)

    def le(self, a: Any, b: Any) -> _Why:
        return self._op(operator.le, a, b)

    def add(self, a: Any, b: Any) -> _Why:
        return self._op(operator.add, a, b)

    def sub(self, a: Any, b: Any) -> _Why:
        return self._op(operator.sub, a, b)

    def select(self, tup: Any, idx: Any) -> Any:
        x = tup[_v(idx)]
        return _Why(_v(x), _t(x, idx))

    def store(self, tup: tuple[Any, ...], idx: Any, val: Any) -> tuple[Any, ...]:
        i = _v(idx)
        return (*tup[:i], val, *tup[i + 1 :])

    def count(self, xs: Any) -> _Why:
        xs = list(xs)
        return _Why(sum(1 for x in xs if _v(x)), _t(*xs))

    def when(self, c: Any, s: Any, fn: Any) -> Any:
        return fn(s) if _v(c) else s


def violation_reads(trace: Trace, system: System | None = None) -> frozenset[str]:
    """The leaves of the final state the violated invariant's failure depends on (by
    provenance); all the leaves it reads if the invariant uses a leaf outside Logic."""
    if not trace.invariant:
        return frozenset()
    system = system or trace.system()
    inv = INVARIANTS[trace.invariant]
    final = trace.states[-1]
    try:
        out = inv(rebuild(final, [_Why(v, frozenset({p})) for p, v in leaves(final)]),
                  system.ctx, _WhyLogic())  # type: ignore[arg-type]
        if isinstance(out, _Why) and not out.v:
            return out.t
    except TypeError:
        pass
    return reads_of(lambda s: bool(inv(s, system.ctx, CONCRETE)), final)


def step_reads(trace: Trace, system: System | None = None) -> list[frozenset[str]]:
    """Index k: the leaves of state k-1 that step k read (index 0 is empty)."""
    system = system or trace.system()
    out: list[frozenset[str]] = [frozenset()]
    inv = INVARIANTS[trace.invariant] if trace.invariant else None
    for k, (name, params) in enumerate(trace.steps, start=1):
        inst = lookup(system, name, params)
        if isinstance(inst, str):
            raise ValueError(f"step {k}: {inst}")
        pre = trace.states[k - 1]
        r = reads_of(lambda s, i=inst: (bool(i.guard(s, system.ctx, CONCRETE)),
                                        i.effect(s, system.ctx, CONCRETE)), pre)
        out.append(r)
    if inv is not None and trace.steps:
        # the invariant reads the final state: attribute each leaf to its last writer
        out.append(violation_reads(trace, system))
    return out


def step_writes(trace: Trace) -> list[frozenset[str]]:
    """Index k: the leaves whose value step k changed (index 0 is empty)."""
    out: list[frozenset[str]] = [frozenset()]
    for k in range(1, len(trace.states)):
        out.append(frozenset(c.path for c in state_diff(trace.states[k - 1], trace.states[k])))
    return out


# ---------------------------------------------------------------- the graph


def trace_graph(trace: Trace) -> nx.DiGraph:
    """Nodes 0..n (0 the initial state, k the step k), path edges k-1 -> k, and causal
    edges j -> k labelled with the leaves k read that j wrote last. Edge attributes:
    `path` (bool) and `leaves` (sorted list, empty for a pure path edge)."""
    g = nx.DiGraph(profile=trace.profile, invariant=trace.invariant, depth=trace.depth,
                   violating=trace.depth if trace.invariant and trace.steps else None)
    reads = step_reads(trace)
    writes = step_writes(trace)
    g.add_node(0, call="initial state", action=None, params={}, writes=[], reads=[])
    for k, (name, params) in enumerate(trace.steps, start=1):
        g.add_node(k, call=format_call(name, params), action=name, params=dict(params),
                   writes=sorted(writes[k]), reads=sorted(reads[k]))
        g.add_edge(k - 1, k, path=True, leaves=[])
    last_writer: dict[str, int] = {}
    n = trace.depth
    for k in range(1, n + 1):
        _causal(g, k, reads[k], last_writer)
        for p in writes[k]:
            last_writer[p] = k
    if len(reads) > n + 1:  # the invariant's reads of the final state, charged to step n
        g.nodes[n]["invariant_reads"] = sorted(reads[n + 1])
        _causal(g, n, reads[n + 1], last_writer, skip_self=True)
    return g


def _causal(g: nx.DiGraph, k: int, reads: frozenset[str], last_writer: dict[str, int],
            skip_self: bool = False) -> None:
    by_writer: dict[int, list[str]] = {}
    for p in reads:
        j = last_writer.get(p)
        if j is not None and not (skip_self and j == k):
            by_writer.setdefault(j, []).append(p)
    for j, ps in by_writer.items():
        if g.has_edge(j, k):
            g.edges[j, k]["leaves"] = sorted({*g.edges[j, k]["leaves"], *ps})
        else:
            g.add_edge(j, k, path=False, leaves=sorted(ps))


def _causal_view(g: nx.DiGraph) -> Any:
    return nx.subgraph_view(g, filter_edge=lambda a, b: bool(g.edges[a, b]["leaves"]))


def causal_slice(trace: Trace, graph: nx.DiGraph | None = None) -> set[int]:
    """The steps the violation depends on: the violating (last) step and its ancestors
    along causal edges. Without an invariant, every step."""
    g = graph if graph is not None else trace_graph(trace)
    n = trace.depth
    if n == 0:
        return set()
    if not trace.invariant:
        return set(range(1, n + 1))
    return ({n} | nx.ancestors(_causal_view(g), n)) - {0}


# ---------------------------------------------------------------- text


def _dep_summary(g: nx.DiGraph, k: int) -> str:
    deps = []
    for j in sorted(g.predecessors(k)):
        ls = g.edges[j, k]["leaves"]
        if ls:
            shown = ", ".join(leaf_label(p) for p in ls[:3]) + (", ..." if len(ls) > 3 else "")
            deps.append(f"{j} ({shown})")
    return "reads what " + "; ".join(deps) + " wrote" if deps else ""


def render_text(trace: Trace, slice_only: bool = False) -> str:
    """Each step as a kernel call with the fields it changed; `*` marks the causal slice."""
    g = trace_graph(trace)
    sl = causal_slice(trace, g)
    head = (f"{trace.invariant} violated after {trace.depth} steps" if trace.invariant
            else f"a run of {trace.depth} steps")
    ov = "".join(f" {k}={value_label('', v)}" for k, v in trace.overrides.items())
    # the loader admits only printable names; escaped again here for traces built in code
    bounds = ",".join(f"{k}={v}" for k, v in trace.bounds.as_dict().items())
    lines = [f"{head} under {trace.profile}{ov} (engine {printable(trace.engine, 64)}"
             + (f", seed {trace.seed})" if trace.seed is not None else ")"),
             f"  bounds {bounds}; page-table allocation failures {'on' if trace.faults else 'off'}",
             "  * = in the causal slice (the steps the violation depends on)"]
    skipped = []
    for k, (name, params) in enumerate(trace.steps, start=1):
        if slice_only and k not in sl:
            skipped.append(k)
            continue
        mark = "*" if k in sl else " "
        lines.append(f"{mark} {k}. {format_call(name, params)}")
        dep = _dep_summary(g, k)
        if dep:
            lines.append(f"       {dep}")
        for ch in format_changes(state_diff(trace.states[k - 1], trace.states[k]), limit=8):
            lines.append(f"       {ch}")
    if skipped:
        lines.append(f"  (not in the slice, omitted: steps {', '.join(map(str, skipped))})")
    if trace.invariant:
        lines.append(f"  => {invariant_doc(trace.invariant)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- DOT and Mermaid

_SLICE_FILL = "#f4a6a6"
_OTHER_FILL = "#e8e8e8"


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(trace: Trace, slice_only: bool = False) -> str:
    """Graphviz DOT text (no graphviz needed to produce it): the path top to bottom,
    causal edges dashed and labelled, slice steps filled red."""
    g = trace_graph(trace)
    sl = causal_slice(trace, g)
    keep = _kept(trace, sl, slice_only)
    title = f"{trace.profile}: {trace.invariant or 'run'} (depth {trace.depth})"
    out = ["digraph trace {", f"  label={_dot_str(title)};", "  labelloc=t;", "  rankdir=TB;",
           '  node [shape=box, style="rounded,filled", fontname="monospace"];']
    for k in sorted(keep):
        label = g.nodes[k]["call"] if k else "initial state"
        fill = _SLICE_FILL if k in sl else ("white" if k == 0 else _OTHER_FILL)
        extra = ", penwidth=2" if k == g.graph["violating"] else ""
        out.append(f"  n{k} [label={_dot_str(f'{k}. {label}' if k else label)}, "
                   f"fillcolor={_dot_str(fill)}{extra}];")
    for a, b, data in g.edges(data=True):
        if a not in keep or b not in keep:
            continue
        if data["path"]:
            out.append(f"  n{a} -> n{b} [weight=10];")
        if data["leaves"]:
            lab = ", ".join(leaf_label(p) for p in data["leaves"][:2])
            lab += ", ..." if len(data["leaves"]) > 2 else ""
            out.append(f"  n{a} -> n{b} [style=dashed, color=\"#c03030\", constraint=false, "
                       f"label={_dot_str(lab)}, fontsize=9];")
    out.append("}")
    return "\n".join(out) + "\n"


def _kept(trace: Trace, sl: set[int], slice_only: bool) -> set[int]:
    return ({0} | sl) if slice_only else set(range(trace.depth + 1))


def _mm(s: str) -> str:
    return s.replace('"', "#quot;")


def render_mermaid(trace: Trace, slice_only: bool = False) -> str:
    """A Mermaid flowchart: path edges solid, causal edges dotted, slice steps styled."""
    g = trace_graph(trace)
    sl = causal_slice(trace, g)
    keep = _kept(trace, sl, slice_only)
    out = ["flowchart TD"]
    for k in sorted(keep):
        label = f"{k}. {g.nodes[k]['call']}" if k else "initial state"
        out.append(f'  s{k}["{_mm(label)}"]')
    for a, b, data in g.edges(data=True):
        if a not in keep or b not in keep:
            continue
        if data["path"]:
            out.append(f"  s{a} --> s{b}")
        if data["leaves"]:
            lab = ", ".join(leaf_label(p) for p in data["leaves"][:2])
            lab += ", ..." if len(data["leaves"]) > 2 else ""
            out.append(f'  s{a} -.->|"{_mm(lab)}"| s{b}')
    out.append(f"  classDef slice fill:{_SLICE_FILL},stroke:#a00")
    if sl & keep:
        out.append("  class " + ",".join(f"s{k}" for k in sorted(sl & keep)) + " slice")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- PNG


MAX_PNG_STEPS = 30  # nodes drawn at most: the picture's size and cost do not grow past it


def png_steps(trace: Trace, sl: set[int], slice_only: bool = False,
              limit: int = MAX_PNG_STEPS) -> tuple[list[int], str]:
    """The nodes a PNG draws, in order, and a note on what was left out. At most `limit`
    nodes: the initial state, the violating step, then the causal slice from the end
    backwards, then the other steps nearest the violation; the note says how many of how
    many are drawn (`show --slice` or `--format dot` give every step)."""
    keep = sorted(_kept(trace, sl, slice_only))
    if len(keep) <= limit:
        return keep, ""
    n = trace.depth
    order = [0, n, *sorted(sl - {0, n}, reverse=True),
             *sorted(set(keep) - sl - {0, n}, reverse=True)]
    kept = set(keep)
    chosen = sorted(list(dict.fromkeys(k for k in order if k in kept))[:limit])
    note = (f"{len(chosen) - 1} of {len(keep) - 1} steps drawn (the causal slice first); "
            "`show --format dot` lists them all")
    return chosen, note


def render_png(trace: Trace, path: str | Path, slice_only: bool = False) -> Path:
    """Draw the path left to right with causal arcs, slice steps in red, with matplotlib's
    Agg canvas (no display, no graphviz). Needs the `png` extra: pip install allocheck[png].

    A long trace is drawn as its first `MAX_PNG_STEPS` nodes by relevance (`png_steps`),
    with a note in the title, so that the picture's size and the drawing time stay bounded;
    a dotted edge with `+k` stands for k steps left out. The file is written atomically
    (`search.traces.itf.write_atomic`): never half a PNG, never through a planted link."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("PNG output needs matplotlib: pip install 'allocheck[png]'") from e
    from search.traces.itf import write_atomic

    g = trace_graph(trace)
    sl = causal_slice(trace, g)
    keep, note = png_steps(trace, sl, slice_only)
    pos = {k: (float(i), 0.0) for i, k in enumerate(keep)}
    fig = Figure(figsize=(max(6.0, 2.6 * len(keep)), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    sub = g.subgraph(keep)
    pairs = list(itertools.pairwise(keep))
    # steps left out for length (not those --slice leaves out): a dotted `+k` edge
    gaps = [(a, b) for a, b in pairs if note and b > a + 1]
    path_edges = [p for p in pairs if p not in gaps]
    causal = [(a, b) for a, b, d in sub.edges(data=True) if d["leaves"]]
    colors = [_SLICE_FILL if k in sl else ("white" if k == 0 else _OTHER_FILL) for k in keep]
    nx.draw_networkx_nodes(sub, pos, nodelist=keep, node_color=colors, node_size=900,
                           edgecolors="#333333", ax=ax)
    nx.draw_networkx_labels(sub, pos, labels={k: str(k) for k in keep}, font_size=10, ax=ax)
    nx.draw_networkx_edges(sub, pos, edgelist=path_edges, width=1.5, arrows=True,
                           arrowsize=14, node_size=900, ax=ax)
    if gaps:
        nx.draw_networkx_edges(sub, pos, edgelist=gaps, width=1.5, style="dotted", arrows=True,
                               arrowsize=14, node_size=900, ax=ax)
        for a, b in gaps:
            ax.text((pos[a][0] + pos[b][0]) / 2, 0.06, f"+{b - a - 1}", ha="center",
                    fontsize=8)
    nx.draw_networkx_edges(sub, pos, edgelist=causal, style="dashed", edge_color="#c03030",
                           connectionstyle="arc3,rad=-0.45", arrows=True, arrowsize=12,
                           node_size=900, ax=ax)
    for k in keep:
        call = g.nodes[k]["call"] if k else "initial state"
        label = textwrap.fill(call, 24, break_long_words=False)
        ax.text(pos[k][0], -0.18, label, ha="center", va="top", fontsize=8, family="monospace")
    ax.set_xlim(-0.7, len(keep) - 0.3)
    ax.set_ylim(-0.75, 0.8)
    ax.set_title(f"{trace.profile}: {trace.invariant or 'run'} (depth {trace.depth}); "
                 "red = causal slice, dashed = def-use" + (f"\n{note}" if note else ""),
                 fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return write_atomic(path, buf.getvalue())


# ---------------------------------------------------------------- explain


def _entity(path: str, trace: Trace) -> str:
    """Which kernel object a leaf belongs to: a frame, a vm area, a program, a ref."""
    fld, idx = field_of(path)
    b = trace.bounds
    if idx is None:
        return "global"
    if fld == "pages.content":
        return f"frame {idx // b.cells}"
    if fld.startswith("pages.") or fld in ("dmap.present", "dmap.w", "dmap.x",
                                           "areas.pte_w", "areas.pte_x", "areas.tlb_x"):
        return f"frame {idx}"
    if fld == "dmap.split":
        return f"direct-map leaf {idx}"
    if fld == "areas.bitmap":
        return f"area {idx // b.chunks} chunk {idx % b.chunks}"
    if fld.startswith("areas."):
        return f"area {idx}"
    if fld.startswith("progs."):
        return f"prog {idx}"
    return f"ref {idx}"


_MAPPING_FIELDS = {
    "areas.pte_w": "vmalloc mapping writable",
    "areas.pte_x": "vmalloc mapping executable",
    "areas.tlb_x": "stale TLB entry executable",
    "dmap.present": "direct-map alias present",
    "dmap.w": "direct-map alias writable",
    "dmap.x": "direct-map alias executable",
    "dmap.split": "direct-map leaf split",
    "areas.huge": "mapped with huge (PMD) leaves",
}


def _candidates(path: str, v: Any, trace: Trace) -> list[Any]:
    if isinstance(v, bool):
        return [not v]
    names = ENUM_NAMES.get(field_of(path)[0])
    b = trace.bounds
    top = len(names) if names else max(b.frames, b.max_ref, b.hpage, b.chunks, b.areas) + 1
    return [x for x in range(top) if x != v]


def repairs(trace: Trace, system: System | None = None) -> list[tuple[Change, list[Any]]]:
    """Leaves of the final state that the invariant read and that the run changed, each
    with the values that, put alone into the final state, make the invariant hold: the
    concrete reason it fails (empty when no single change repairs it)."""
    if not trace.invariant or not trace.steps:
        return []
    system = system or trace.system()
    inv = INVARIANTS[trace.invariant]
    final = trace.states[-1]
    read = violation_reads(trace, system)
    changed = {c.path: c for c in state_diff(trace.states[0], final)}
    paths = [p for p, _ in leaves(final)]
    vals = [v for _, v in leaves(final)]
    out = []
    for i, p in enumerate(paths):
        if p not in read or p not in changed:
            continue
        good = []
        for cand in _candidates(p, vals[i], trace):
            trial = list(vals)
            trial[i] = cand
            if inv(rebuild(final, trial), system.ctx, CONCRETE):
                good.append(cand)
        if good:
            out.append((changed[p], good))
    return out


def fixing_profile(trace: Trace) -> str | None:
    """The profile to compare against: the unmodified profile when the trace has overrides
    and the invariant holds there, else the first later profile where it holds."""
    if not trace.invariant:
        return None
    names = list(PROFILES)
    cands = ([trace.profile] if trace.overrides else []) + names[names.index(trace.profile) + 1:]
    for n in cands:
        if PROFILES[n].expected(trace.invariant, trace.faults, trace.bounds.nodes) == "holds":
            return n
    return None


def needed_flags(trace: Trace, reference: str) -> tuple[list[tuple[str, Any, Any, str]], list[str]]:
    """Flags whose value differs from `reference`'s: those that alone (set to the
    reference's value) stop the trace reproducing, with replay's reason, and the others."""
    ref = PROFILES[reference].flags.as_dict()
    needed, idle = [], []
    for name, value in trace.flags.items():
        if ref[name] == value:
            continue
        report = replay(trace, trace.profile, {**trace.overrides, name: ref[name]})
        if report.reproduced:
            idle.append(name)
        else:
            needed.append((name, value, ref[name], report.reason))
    return needed, idle


def explain(trace: Trace) -> str:
    """The invariant and its story, the frames and mappings involved, the flags that made
    the violation reachable, and the kernel commit that removed it."""
    if not trace.invariant:
        return f"a run of {trace.depth} steps under {trace.profile}: no violation recorded\n"
    inv, n = trace.invariant, trace.depth
    ov = ", ".join(f"{k}={value_label('', v)}" for k, v in trace.overrides.items())
    lines = [f"{inv} is violated after step {n} under {trace.profile}"
             + (f" with {ov}" if ov else "") + ".",
             f"  {invariant_doc(inv)}"]
    if n:
        name, params = trace.steps[-1]
        last = format_changes(state_diff(trace.states[-2], trace.states[-1]), limit=6)
        lines.append(f"The last step, {format_call(name, params)}, changed: "
                     + ("; ".join(last) if last else "nothing") + ".")
    fixes = repairs(trace)
    if fixes:
        lines.append("What is wrong in the final state (each alone would restore the invariant):")
        for ch, good in fixes:
            what = _MAPPING_FIELDS.get(field_of(ch.path)[0], "")
            what = f" ({what})" if what else ""
            alts = " or ".join(value_label(ch.path, v) for v in good)
            lines.append(f"  {_entity(ch.path, trace)}: {leaf_label(ch.path)}{what} is "
                         f"{value_label(ch.path, ch.new)}; {alts} would do")
    ref = fixing_profile(trace)
    if ref is None:
        lines.append("No built-in profile is declared to keep this invariant: nothing to compare.")
    else:
        needed, idle = needed_flags(trace, ref)
        if needed:
            lines.append(f"Reachable because of these flags ({inv} holds under {ref}):")
            for name, value, refval, why in needed:
                lines.append(f"  {name}={value_label('', value)} (under {ref}: "
                             f"{value_label('', refval)}): {FLAG_INFO[name].doc}")
                lines.append(f"    with {ref}'s value alone: {why.split('. ')[0]}.")
        else:
            lines.append(f"No single flag of {ref} stops this trace; the difference is in "
                         "several flags together.")
        if idle:
            lines.append(f"  flags that differ from {ref} but do not matter here: "
                         + ", ".join(idle))
    lines += _fix_lines(trace)
    return "\n".join(lines) + "\n"


def _fix_lines(trace: Trace) -> list[str]:
    inv = trace.invariant or ""
    out = []
    if trace.overrides:
        for bug in SEEDED_BUGS:
            if bug.base == trace.profile and bug.overrides == trace.overrides:
                out.append(f"Seeded bug {bug.name}: {bug.story}.")
    commit = PROFILES[trace.profile].fixed_by.get(inv)
    if commit:
        out.append(f"Removed in the kernel by {commit}.")
    elif not trace.overrides:
        out.append(f"No fixing commit is recorded for {inv} under {trace.profile}.")
    return out
