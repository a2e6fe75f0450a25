"""Counterexample traces: the `Trace` record, its ITF JSON form, atomic save, validated load.

A trace file is data. Loading parses JSON, checks every key and value against the model,
and re-executes the recorded steps on the concrete model to check every recorded state; it
never evaluates or unpickles anything from the file.

Format: Apalache ADR-015 ("ITF"), documented in counterexamples/README.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invariants import INVARIANTS
from model.actions import ACTIONS, VOCABULARY, Action, Instance
from model.bounds import OPTIONAL, Bounds, BoundsError
from model.profiles import FLAG_INFO, ProfileError, get_profile
from model.state import State, initial_state
from model.system import System
from search.result import InternalError
from search.traces.naming import (
    echo,
    format_call,
    leaf_label,
    one_line,
    printable,
    state_diff,
    value_label,
)

FORMAT = "ITF"
FORMAT_VERSION = 1  # of allocheck's use of ITF: bump when a field changes meaning
STATE_VARS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(State))
META_KEYS = frozenset({
    "format", "format-version", "allocheck-version", "description", "profile", "flags",
    "overrides", "bounds", "faults", "invariant", "engine", "seed",
})
STATE_META_KEYS = frozenset({"index", "action", "params"})
_MAX_SAFE_INT = 2**53 - 1  # ITF: larger ints must be {"#bigint": "..."}
# No value of the model, no depth and no seed needs more digits than this; a longer integer
# is refused before Python converts it (past 4,300 digits that conversion itself fails).
MAX_DIGITS = 40
MAX_BYTES = 64 * 2**20  # a trace at the largest bounds and depth is a few MiB
MAX_TEXT = 1000  # characters of a free-text field (#meta.description)
MAX_NAME = 64  # characters of a name field (#meta.engine, #meta.allocheck-version)

Step = tuple[str, dict[str, Any]]


class TraceError(ValueError):
    """A trace file that cannot be trusted: one line, naming the file and the problem."""


class _Bad(Exception):
    """Internal: what is wrong, without the file name (added once, at the top)."""


def allocheck_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("allocheck")
    except PackageNotFoundError:
        pass
    # running from a checkout: pyproject.toml is the single source of the version
    try:
        import tomllib

        root = Path(__file__).resolve().parent.parent
        with open(root / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


@dataclass(frozen=True)
class Trace:
    """A run of the model: the configuration, the steps taken and every state reached.

    `states[0]` is the initial state and `states[k]` the state after step k (1-based)."""

    profile: str
    overrides: dict[str, Any]
    flags: dict[str, Any]  # the full effective flag set (profile + overrides)
    bounds: Bounds
    faults: bool
    invariant: str | None  # the violated invariant, or None for a plain run
    engine: str
    seed: int | None
    steps: tuple[Step, ...]
    states: tuple[State, ...]
    description: str = field(default="")

    @property
    def depth(self) -> int:
        return len(self.steps)

    def system(self) -> System:
        # the whole vocabulary: a trace may hold the calls a scenario made
        return System.build(self.profile, bounds=self.bounds, faults=self.faults,
                            overrides=self.overrides, scenario=True)



def find_instances(system: System, calls: Iterable[str]) -> list[Instance]:
    """The instances spelled like `str(inst)`, in order (for tests and hand-made traces)."""
    by_str = {str(i): i for i in system.instances}
    out = []
    for call in calls:
        if call not in by_str:
            raise KeyError(f"no instance {call!r} under profile {system.profile.name}")
        out.append(by_str[call])
    return out


def trace_from_steps(system: System, instances: Sequence[Instance], invariant: str | None,
                     engine: str, seed: int | None = None, description: str = "") -> Trace:
    """Step the concrete model through `instances` and record every state."""
    s = system.initial()
    states = [s]
    for k, inst in enumerate(instances, start=1):
        if not inst.guard(s, system.ctx, _concrete()):
            raise InternalError(f"{engine} trace step {k} {inst} is not enabled on the "
                                "concrete model")
        s = system.step(s, inst)
        states.append(s)
    return Trace(
        profile=system.profile.name,
        overrides=dict(system.overrides),
        flags=system.flags.as_dict(),
        bounds=system.bounds,
        faults=system.faults,
        invariant=invariant,
        engine=engine,
        seed=seed,
        steps=tuple((i.name, i.params) for i in instances),
        states=tuple(states),
        description=description or _default_description(
            system.profile.name, invariant, len(instances), engine,
            instances[-1].name if instances else None, not system.overrides),
    )


def _concrete() -> Any:
    from model.logic import CONCRETE

    return CONCRETE

# ---------------------------------------------------------------- ITF encoding


def _encode(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _encode(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, tuple):
        return [_encode(e) for e in x]
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x if abs(x) <= _MAX_SAFE_INT else {"#bigint": str(x)}
    raise TypeError(f"cannot encode {type(x).__name__} in a trace")


def to_itf(trace: Trace) -> dict[str, Any]:
    meta = {
        "format": FORMAT,
        "format-version": FORMAT_VERSION,
        "allocheck-version": allocheck_version(),
        "description": trace.description,
        "profile": trace.profile,
        "flags": dict(trace.flags),
        "overrides": dict(trace.overrides),
        "bounds": trace.bounds.as_dict(),
        "faults": trace.faults,
        "invariant": trace.invariant,
        "engine": trace.engine,
        "seed": trace.seed,
    }
    states = []
    for k, s in enumerate(trace.states):
        name, params = (None, None) if k == 0 else trace.steps[k - 1]
        st: dict[str, Any] = {"#meta": {"index": k, "action": name,
                                        "params": None if params is None else dict(params)}}
        st.update({v: _encode(getattr(s, v)) for v in STATE_VARS})
        states.append(st)
    return {"#meta": meta, "vars": list(STATE_VARS), "states": states}


def _default_description(profile: str, invariant: str | None, depth: int, engine: str,
                         last: str | None = None, declared: bool = False) -> str:
    """What the trace shows: for a violation, the kernel call that completes it (the user)
    and, where the profile declares it, the commit that fixed it."""
    what = f"{invariant} violated" if invariant else "a run"
    text = f"{what} after {depth} steps under {profile} (found by {engine})"
    if invariant and last:
        text += f"; completed by {last}"
        fix = get_profile(profile).fixed_by.get(invariant) if declared else None
        if fix:
            text += f"; fixed by {fix}"
    return text[:MAX_TEXT]


_SCALAR_LIST = re.compile(r"\[\s*((?:-?\d+|true|false)(?:\s*,\s*(?:-?\d+|true|false))*)\s*\]")


def dumps(trace: Trace) -> str:
    """Indented JSON with every list of scalars on one line: readable and diffable."""
    text = json.dumps(to_itf(trace), indent=1, ensure_ascii=False)
    return _SCALAR_LIST.sub(lambda m: "[" + re.sub(r"\s*,\s*", ", ", m.group(1)) + "]", text) + "\n"


# ---------------------------------------------------------------- save


def base_name(trace: Trace) -> str:
    """`v5.18-rc1__no_tail_as_base__d3`: profile, invariant, depth."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", trace.profile)
    return f"{safe}__{trace.invariant or 'run'}__d{trace.depth}"


def _identity(profile: Any, overrides: Any, bounds: Any, faults: Any, invariant: Any,
              steps: Any) -> str:
    """What makes two traces the same trace: not who found it, when, or with which seed."""
    key = {"profile": profile, "overrides": overrides, "bounds": bounds, "faults": faults,
           "invariant": invariant, "steps": steps}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def trace_identity(trace: Trace) -> str:
    return _identity(trace.profile, trace.overrides, trace.bounds.as_dict(), trace.faults,
                     trace.invariant, [[n, p] for n, p in trace.steps])


def _file_identity(path: Path) -> str | None:
    """The identity of an existing file, leniently: anything unreadable is 'not the same'."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        m = doc["#meta"]
        steps = [[st["#meta"]["action"], st["#meta"]["params"]] for st in doc["states"][1:]]
        return _identity(m["profile"], m["overrides"], m["bounds"], m["faults"],
                         m["invariant"], steps)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _temp_beside(target: Path) -> tuple[int, str]:
    """A new, private temporary file in `target`'s folder (so that a rename is atomic);
    O_EXCL: never an existing file or a planted link."""
    return tempfile.mkstemp(prefix=f".{target.name[:40]}.", suffix=".tmp", dir=target.parent)


def _file_mode() -> int:
    """The mode a plain `open(..., "w")` would give a new file (0666 less the umask),
    read without changing the umask where the system says it."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fill(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_new(target: Path, text: str) -> bool:
    """Write `text` to `target` atomically; False (and nothing written) if it exists."""
    fd, tmp = _temp_beside(target)
    try:
        os.chmod(tmp, _file_mode())
        _fill(fd, text.encode("utf-8"))
        try:
            # a hard link never replaces an existing file: two savers cannot clobber
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:
            if os.path.lexists(target):
                return False
            os.replace(tmp, target)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `target` the way traces are written: into a temporary file in the
    same folder, flushed to disk, then renamed over `target`. A reader never sees a
    half-written file, a full disk leaves what was there before (and no temporary), and a
    symbolic link planted at `target` is replaced, never followed. A `target` that exists
    and is neither a regular file nor a link (a folder, a device such as /dev/null, a
    FIFO) is refused with an OSError: renaming over it would destroy it."""
    out = Path(target)
    with contextlib.suppress(FileNotFoundError):
        mode = os.lstat(out).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise OSError(errno.EEXIST, f"exists and is {_file_kind(mode)}", os.fspath(out))
    fd, tmp = _temp_beside(out)
    try:
        os.chmod(tmp, _file_mode())
        _fill(fd, data)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out


def save(trace: Trace, out_dir: str | os.PathLike[str]) -> Path:
    """Write `trace` under `out_dir` as `<profile>__<invariant>__d<depth>.itf.json` and
    return its path. The same trace (same configuration and steps, whoever found it) is
    never written twice: its existing path is returned. A different trace with the same
    name gets a short hash of its identity as a suffix."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = dumps(trace)  # before touching the directory: an encoding error leaves no file
    ident = trace_identity(trace)
    plain = out / f"{base_name(trace)}.itf.json"
    hashed = out / f"{base_name(trace)}__{ident[:10]}.itf.json"
    for p in (plain, hashed):
        if p.exists() and _file_identity(p) == ident:
            return p
    if not plain.exists() and _write_new(plain, text):
        return plain
    if _file_identity(plain) == ident:  # a concurrent saver wrote this very trace
        return plain
    if not _write_new(hashed, text) and _file_identity(hashed) != ident:
        raise TraceError(f"{hashed.name}: exists and holds a different trace")
    return hashed


# ---------------------------------------------------------------- load


def load(path: str | os.PathLike[str]) -> Trace:
    """Read and fully validate a trace file; any problem is one `TraceError` line.

    Only a regular file is read: a folder, a FIFO (which would block), a device such as
    /dev/zero (which never ends) or a socket is named for what it is. The file is opened
    without blocking and checked on the open descriptor, so what is checked is what is read."""
    p = Path(path)
    shown = printable(os.fspath(p), 120)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise TraceError(f"{shown}: cannot read: no such file") from None
    except NotADirectoryError:
        raise TraceError(f"{shown}: cannot read: no such file (a part of the path is not a "
                         "folder)") from None
    except IsADirectoryError:
        raise TraceError(f"{shown}: cannot read: a folder, not a trace file") from None
    except OSError as e:
        raise TraceError(f"{shown}: cannot open: {e.strerror or e}") from None
    except ValueError:  # a NUL in the name: only from a caller in Python, never from argv
        raise TraceError(f"{shown}: cannot read: the name holds a NUL character") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TraceError(f"{shown}: cannot read: {_file_kind(st.st_mode)}, not a trace file")
        if st.st_size > MAX_BYTES:
            raise TraceError(f"{shown}: {st.st_size} bytes is too large for a trace "
                             f"(at most {MAX_BYTES // 2**20} MiB)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise TraceError(f"{shown}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise TraceError(f"{shown}: too large for a trace (at most {MAX_BYTES // 2**20} MiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TraceError(f"{shown}: not UTF-8 text (byte {e.start})") from None
    return loads(text, p.name)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def loads(text: str, name: str = "<trace>") -> Trace:
    """Parse and fully validate trace text; any problem is one `TraceError` line, with
    every value it quotes escaped and cut (see `search.traces.naming.one_line`)."""
    name = printable(name, 120)
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                         parse_int=_parse_int)
    except json.JSONDecodeError as e:
        raise TraceError(f"{name}: not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise TraceError(f"{name}: not JSON we accept: nested too deeply") from None
    except _Bad as e:
        raise TraceError(one_line(f"{name}: {e}")) from None
    except ValueError as e:  # whatever else json itself refuses
        raise TraceError(one_line(f"{name}: not JSON we accept: {e}")) from None
    try:
        return _from_itf(doc)
    except _Bad as e:
        raise TraceError(one_line(f"{name}: {e}")) from None
    except RecursionError:
        raise TraceError(f"{name}: nested too deeply") from None


def _parse_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_DIGITS:
        raise _Bad(f"an integer of {n} digits is out of any range a trace may hold")
    return int(digits)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Bad(f"duplicate key {echo(k)}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise _Bad(f"{name} is not a number a trace may hold")


def _obj(x: Any, where: str, keys: frozenset[str] | set[str]) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise _Bad(f"{where} must be a JSON object, got {_kind(x)}")
    missing = sorted(set(keys) - set(x))
    extra = sorted(set(x) - set(keys))
    if missing:
        raise _Bad(f"{where} lacks key {echo(missing[0])}")
    if extra:
        raise _Bad(f"{where} has unknown key {echo(extra[0])}")
    return x


_BIGINT = re.compile(r"-?[0-9]+")


def _json(x: Any) -> str:
    """A value from a file as JSON, escaped and cut: for messages."""
    try:
        return printable(json.dumps(x, ensure_ascii=True), 60)
    except (ValueError, TypeError, RecursionError):
        return echo(x, 60)


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int):
        return "an integer"
    if isinstance(x, float):
        return "a fractional number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "a list"
    return "an object"


def _int(x: Any, where: str) -> int:
    if isinstance(x, dict) and set(x) == {"#bigint"} and isinstance(x["#bigint"], str):
        digits = x["#bigint"]
        if not _BIGINT.fullmatch(digits):
            raise _Bad(f"{where} is not an integer: #bigint {echo(digits)}")
        if len(digits.lstrip("-")) > MAX_DIGITS:
            raise _Bad(f"{where}: #bigint of {len(digits.lstrip('-'))} digits is out of any "
                       "range a trace may hold")
        return int(digits)
    if isinstance(x, bool) or not isinstance(x, int):
        raise _Bad(f"{where} must be an integer, got {_kind(x)}")
    return x


def _str(x: Any, where: str, limit: int = MAX_NAME) -> str:
    """A string field: printable (no control or format character, no lone surrogate: it
    may be printed on a terminal) and at most `limit` characters."""
    if not isinstance(x, str):
        raise _Bad(f"{where} must be a string, got {_kind(x)}")
    if len(x) > limit:
        raise _Bad(f"{where} has {len(x)} characters, at most {limit} are allowed")
    if not x.isprintable():
        i, ch = next((i, c) for i, c in enumerate(x) if not c.isprintable())
        raise _Bad(f"{where} holds a character that cannot be printed safely "
                   f"({printable(ch)} at position {i})")
    return x


def _bool(x: Any, where: str) -> bool:
    if not isinstance(x, bool):
        raise _Bad(f"{where} must be true or false, got {_kind(x)}")
    return x


def _decode(template: Any, x: Any, where: str) -> Any:
    """A value of `template`'s shape and leaf types from ITF JSON, or _Bad."""
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        names = [f.name for f in dataclasses.fields(template)]
        obj = _obj(x, where, set(names))
        return dataclasses.replace(
            template, **{n: _decode(getattr(template, n), obj[n], f"{where}.{n}") for n in names})
    if isinstance(template, tuple):
        if isinstance(x, dict) and set(x) == {"#tup"}:
            x = x["#tup"]
        if not isinstance(x, list):
            raise _Bad(f"{where} must be a list, got {_kind(x)}")
        if len(x) != len(template):
            raise _Bad(f"{where} has {len(x)} entries, the bounds give {len(template)}")
        pairs = enumerate(zip(template, x, strict=True))
        return tuple(_decode(t, e, f"{where}[{i}]") for i, (t, e) in pairs)
    if isinstance(template, bool):
        return _bool(x, where)
    return _int(x, where)


def _from_itf(doc: Any) -> Trace:
    top = _obj(doc, "the top level", {"#meta", "vars", "states"})
    meta = _obj(top["#meta"], "#meta", META_KEYS)
    if meta["format"] != FORMAT:
        raise _Bad(f"#meta.format is {echo(meta['format'])}, not {FORMAT!r}")
    version = meta["format-version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != FORMAT_VERSION:
        raise _Bad(f"format version {echo(version)} is not supported (this allocheck reads "
                   f"version {FORMAT_VERSION})")
    _str(meta["allocheck-version"], "#meta.allocheck-version")
    description = _str(meta["description"], "#meta.description", MAX_TEXT)
    profile = _str(meta["profile"], "#meta.profile")
    try:
        prof = get_profile(profile)
        overrides = meta["overrides"]
        if not isinstance(overrides, dict):
            raise _Bad(f"#meta.overrides must be an object, got {_kind(overrides)}")
        flags = prof.flags.with_overrides(overrides)
    except ProfileError as e:
        raise _Bad(str(e)) from None
    recorded_flags = meta["flags"]
    if not isinstance(recorded_flags, dict):
        raise _Bad(f"#meta.flags must be an object, got {_kind(recorded_flags)}")
    for k in recorded_flags:
        if k not in FLAG_INFO:
            raise _Bad(f"unknown flag {echo(k)} in #meta.flags")
    effective = flags.as_dict()
    for k, v in effective.items():
        if k not in recorded_flags:
            raise _Bad(f"#meta.flags lacks flag {k!r}")
        got = recorded_flags[k]
        if got != v or type(got) is not type(v):
            raise _Bad(f"#meta.flags.{k} is {_json(got)} but profile {profile} with the "
                       f"recorded overrides gives {_json(v)}")
    bounds = _bounds(meta["bounds"])
    faults = _bool(meta["faults"], "#meta.faults")
    invariant = meta["invariant"]
    if invariant is not None and (not isinstance(invariant, str) or invariant not in INVARIANTS):
        raise _Bad(f"unknown invariant {echo(invariant)}; known: {', '.join(INVARIANTS)}")
    engine = _str(meta["engine"], "#meta.engine")
    seed = meta["seed"]
    if seed is not None:
        seed = _int(seed, "#meta.seed")
    if top["vars"] != list(STATE_VARS):
        raise _Bad(f"vars must be {list(STATE_VARS)}, got {echo(top['vars'])}")
    raw_states = top["states"]
    if not isinstance(raw_states, list) or not raw_states:
        raise _Bad("states must be a non-empty list")

    system = System.build(profile, bounds=bounds, faults=faults, overrides=overrides, scenario=True)
    template = initial_state(bounds)
    steps: list[Step] = []
    instances: list[Instance] = []
    states: list[State | None] = []
    for k, raw in enumerate(raw_states):
        if isinstance(raw, dict) and set(raw) == {"#meta"}:
            keys: frozenset[str] | set[str] = {"#meta"}  # the state is computed, not recorded
        else:
            keys = {"#meta", *STATE_VARS}
        st = _obj(raw, f"state {k}", keys)
        m = _obj(st["#meta"], f"state {k} #meta", STATE_META_KEYS)
        if _int(m["index"], f"state {k} #meta.index") != k:
            raise _Bad(f"state {k} has #meta.index {echo(m['index'])}")
        if k == 0:
            if m["action"] is not None or m["params"] is not None:
                raise _Bad("state 0 is the initial state: its action and params must be null")
        else:
            inst = _instance(system, m["action"], m["params"], k)
            instances.append(inst)
            steps.append((inst.name, inst.params))
        if len(keys) == 1:
            states.append(None)
            continue
        values = {v: _decode(getattr(template, v), st[v], f"state {k} {v}") for v in STATE_VARS}
        states.append(State(**values))

    s = system.initial()
    computed = [s]
    if states[0] is not None:
        _check_state(states[0], s, 0, "the initial state")
    for k, inst in enumerate(instances, start=1):
        if not inst.guard(s, system.ctx, _concrete()):
            raise _Bad(f"step {k} {inst} is not enabled in state {k - 1} (replay explains why)")
        s = system.step(s, inst)
        computed.append(s)
        recorded = states[k]
        if recorded is not None:
            _check_state(recorded, s, k, f"what step {k} {inst} produces")
    return Trace(profile, dict(overrides), effective, bounds, faults, invariant, engine, seed,
                 tuple(steps), tuple(computed), description)


def _bounds(x: Any) -> Bounds:
    names = list(Bounds.LIMITS)
    # a bound left out at its default (OPTIONAL) may be absent, as Bounds.as_dict writes it
    given = dict(x) if isinstance(x, dict) else x
    if isinstance(given, dict):
        for n, default in OPTIONAL.items():
            given.setdefault(n, default)
    obj = _obj(given, "#meta.bounds", set(names))
    try:
        return Bounds(**{n: _int(obj[n], f"#meta.bounds.{n}") for n in names})
    except BoundsError as e:
        raise _Bad(str(e)) from None


def action_named(name: str, params: Any) -> Action:
    """The action `name` whose parameter names are those of `params` (a name may be
    overloaded: the built-in `put_page(ref)`, the scenario call `put_page(page)`); the
    built-in one when none fits, so that errors name its parameters."""
    keys = set(params) if isinstance(params, dict) else set()
    for (n, ps), act in VOCABULARY.items():
        if n == name and set(ps) == keys:
            return act
    return ACTIONS.get(name) or next(a for (n, _), a in VOCABULARY.items() if n == name)


def param_domains(system: System, action: str | Action) -> dict[str, list[Any]]:
    """Every value each parameter of `action` takes over the system's instances."""
    act = action if isinstance(action, Action) else ACTIONS[action]
    out: dict[str, list[Any]] = {p: [] for p in act.params}
    for inst in system.instances:
        if inst.action is act:
            for k, v in inst.items:
                if not any(v == u and type(v) is type(u) for u in out[k]):
                    out[k].append(v)
    return out


def lookup(system: System, name: Any, params: Any) -> Instance | str:
    """The instance `name(params)` of `system`, or why there is none (one line)."""
    if not isinstance(name, str) or not any(n == name for n, _ in VOCABULARY):
        return f"unknown action {echo(name)}"
    act = action_named(name, params)
    if not isinstance(params, dict):
        return f"the params of {name} must be an object, got {_kind(params)}"
    for k in params:
        if k not in act.params:
            return f"unknown parameter {echo(k)} of {name} (it takes {', '.join(act.params)})"
    for k in act.params:
        if k not in params:
            return f"{name} lacks parameter {k!r}"
    domains = param_domains(system, act)
    if not any(i.action is act for i in system.instances):
        return (f"action {name} does not exist under profile {system.profile.name} "
                "with these flags")
    for k in act.params:
        v = params[k]
        if not any(v == u and type(v) is type(u) for u in domains[k]):
            shown = ", ".join(value_label("", u) for u in domains[k])
            return (f"parameter {k}={_json(v)} of {name} is out of bounds "
                    f"(domain under these bounds and flags: {shown})")
    items = tuple((k, params[k]) for k in act.params)
    inst = system.by_key.get((name, items))
    if inst is None:
        return f"{format_call(name, dict(items))} is not an instance under these bounds and flags"
    return inst


def _instance(system: System, name: Any, params: Any, k: int) -> Instance:
    found = lookup(system, name, params)
    if isinstance(found, str):
        raise _Bad(f"state {k}: {found}")
    return found


def _check_state(recorded: State, model: State, k: int, what: str) -> None:
    diff = state_diff(recorded, model)
    if diff:
        first = diff[0]
        more = f" (and {len(diff) - 1} more fields)" if len(diff) > 1 else ""
        raise _Bad(f"state {k} does not match {what}: {leaf_label(first.path)} is recorded as "
                   f"{value_label(first.path, first.old)}, the model gives "
                   f"{value_label(first.path, first.new)}{more}")
