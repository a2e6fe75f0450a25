"""Scenario files (`*.calls`): a kernel code path written as the calls it makes.

    # fbdev deferred I/O on a vmalloc'ed shadow framebuffer (fb_defio.c, 5.17)
    profile: v5.18-rc1, v5.18
    bounds: hpage=4,refs=2
    fb = vzalloc(npages=4)
    page = vmalloc_to_page(fb, index=3)
    set_page_mapping(page)
    vfree(fb)

One call per line, in the syntax allocheck prints (`vmalloc(area=0, npages=2)`); `#` starts
a comment. `name = call(...)` names the object the call returns (a vm area, a page) and a
later call may pass the name instead of a slot number. A parameter may be `*`: any value
of its domain, chosen by the engine. Header lines before the first call give defaults the
command line overrides: `profile:`, `set:`, `bounds:`, `faults:`, and `expect:` lines
(what the scenario should give under a profile, asserted by the tests).

Parsing is plain text matching: nothing from a file is ever evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from search.traces.naming import format_call

MAX_BYTES = 1 << 20  # a scenario is a code path, not a data set
MAX_CALLS = 512


class ScenarioError(ValueError):
    """A file that is no scenario: the message is one line naming the file and line."""


class Star:
    """`*`: any value of the parameter's domain."""

    def __repr__(self) -> str:
        return "*"


STAR = Star()


@dataclass(frozen=True)
class Name:
    """A reference to an object an earlier call named, or a kernel constant."""

    text: str


Value = int | bool | Name | Star


@dataclass(frozen=True)
class Call:
    line: int  # 1-based line in the file
    text: str  # the call as written (comment stripped)
    name: str
    args: tuple[Value, ...]  # positional
    kwargs: tuple[tuple[str, Value], ...]
    binds: str | None  # `binds = name(...)`


@dataclass(frozen=True)
class Expect:
    """`expect: PROFILE: inv@K, inv@K` (violated first at call K), `holds`, or
    `impossible@K` (call K cannot happen under that profile)."""

    profile: str
    violated: tuple[tuple[str, int], ...]
    impossible: int | None
    line: int


@dataclass(frozen=True)
class Scenario:
    path: str
    calls: tuple[Call, ...]
    profiles: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    bounds: str | None = None
    faults: bool | None = None
    expects: tuple[Expect, ...] = field(default=())
    interleave: int | None = None

    @property
    def label(self) -> str:
        return Path(self.path).name


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CALL = re.compile(rf"^(?:(?P<bind>{_IDENT})\s*=\s*)?(?P<name>{_IDENT})\s*\((?P<args>[^()]*)\)$")
_HEADER = re.compile(r"^(?P<key>profile|set|bounds|faults|expect|interleave)\s*:\s*(?P<val>.*)$")
_ARG_KW = re.compile(rf"^(?P<key>{_IDENT})\s*=\s*(?P<val>.+)$")
_INT = re.compile(r"^-?[0-9]{1,6}$")
_EXPECT_ITEM = re.compile(rf"^(?P<what>{_IDENT})@(?P<k>[0-9]{{1,4}})$")


def _where(path: str, line: int) -> str:
    return f"{_safe(path)}:{line}"


def _safe(text: str, limit: int = 80) -> str:
    """A value from a file or the command line, fit for one line of a terminal."""
    out = "".join(ch if ch.isprintable() and ch != "\\" else f"\\x{ord(ch):02x}"
                  if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" for ch in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _value(raw: str, where: str) -> Value:
    raw = raw.strip()
    if raw == "*":
        return STAR
    if raw in ("true", "false"):
        return raw == "true"
    if _INT.match(raw):
        return int(raw)
    if re.fullmatch(_IDENT, raw):
        return Name(raw)
    raise ScenarioError(f"{where}: bad value {_safe(raw)!r}: an integer, true, false, *, or a name")


def parse_call(text: str, where: str, line: int) -> Call:
    m = _CALL.match(text)
    if not m:
        raise ScenarioError(f"{where}: not a call: {_safe(text)!r} (expected name(arg, key=value, ...))")
    args: list[Value] = []
    kwargs: dict[str, Value] = {}
    body = m["args"].strip()
    for item in (body.split(",") if body else []):
        item = item.strip()
        if not item:
            raise ScenarioError(f"{where}: empty argument in {_safe(text)!r}")
        kw = _ARG_KW.match(item)
        if kw:
            if kw["key"] in kwargs:
                raise ScenarioError(f"{where}: parameter {kw['key']} given twice")
            kwargs[kw["key"]] = _value(kw["val"], where)
        elif kwargs:
            raise ScenarioError(f"{where}: positional argument {_safe(item)!r} after a keyword argument")
        else:
            args.append(_value(item, where))
    return Call(line, text, m["name"], tuple(args), tuple(kwargs.items()), m["bind"])


def _expect(val: str, where: str, line: int) -> Expect:
    prof, sep, rest = val.partition(":")
    if not sep or not prof.strip():
        raise ScenarioError(f"{where}: expect needs 'PROFILE: holds' or 'PROFILE: invariant@K, ...'")
    violated: list[tuple[str, int]] = []
    impossible = None
    items = [x.strip() for x in rest.split(",") if x.strip()]
    if items == ["holds"]:
        return Expect(prof.strip(), (), None, line)
    if not items:
        raise ScenarioError(f"{where}: expect for {_safe(prof.strip())} lists nothing")
    for item in items:
        m = _EXPECT_ITEM.match(item)
        if not m:
            raise ScenarioError(f"{where}: bad expectation {_safe(item)!r} (invariant@K, impossible@K)")
        if m["what"] == "impossible":
            impossible = int(m["k"])
        else:
            violated.append((m["what"], int(m["k"])))
    return Expect(prof.strip(), tuple(violated), impossible, line)


def parse(text: str, path: str = "<scenario>") -> Scenario:
    """A scenario from the text of a `.calls` file; ScenarioError names file and line."""
    calls: list[Call] = []
    head: dict[str, object] = {"profiles": (), "sets": (), "bounds": None, "faults": None,
                               "interleave": None}
    expects: list[Expect] = []
    names: set[str] = set()
    for n, raw in enumerate(text.splitlines(), start=1):
        where = _where(path, n)
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        h = _HEADER.match(line)
        if h:
            key, val = h["key"], h["val"].strip()
            if calls and key != "expect":
                raise ScenarioError(f"{where}: header '{key}:' after the first call")
            if key == "profile":
                head["profiles"] = tuple(p.strip() for p in val.split(",") if p.strip())
            elif key == "set":
                head["sets"] = (*head["sets"], *(s.strip() for s in val.split(",") if s.strip()))  # type: ignore[misc]
            elif key == "bounds":
                head["bounds"] = val
            elif key == "faults":
                if val not in ("on", "off", "true", "false"):
                    raise ScenarioError(f"{where}: faults: on or off, not {_safe(val)!r}")
                head["faults"] = val in ("on", "true")
            elif key == "interleave":
                if not _INT.match(val) or not 0 <= int(val) <= 8:
                    raise ScenarioError(f"{where}: interleave: an integer 0..8, not {_safe(val)!r}")
                head["interleave"] = int(val)
            else:
                expects.append(_expect(val, where, n))
            continue
        call = parse_call(line, where, n)
        for v in (*call.args, *(v for _, v in call.kwargs)):
            if isinstance(v, Name) and v.text.islower() and v.text not in names:
                raise ScenarioError(f"{where}: {_safe(v.text)} is not named by an earlier call")
        if call.binds:
            names.add(call.binds)
        calls.append(call)
        if len(calls) > MAX_CALLS:
            raise ScenarioError(f"{where}: more than {MAX_CALLS} calls")
    if not calls:
        raise ScenarioError(f"{_safe(path)}: no calls (an empty scenario checks nothing)")
    return Scenario(path, tuple(calls), head["profiles"], head["sets"], head["bounds"],  # type: ignore[arg-type]
                    head["faults"], tuple(expects), head["interleave"])  # type: ignore[arg-type]


def load(path: str) -> Scenario:
    """Read and parse a `.calls` file: missing, unreadable, binary or oversized files are
    ScenarioErrors too."""
    p = Path(path)
    try:
        if not p.is_file():
            what = ("is a folder" if p.is_dir()
                    else "is not a regular file" if p.exists() else "no such file")
            raise ScenarioError(f"{_safe(path)}: {what}")
        with open(p, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise ScenarioError(f"{_safe(path)}: cannot read: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ScenarioError(f"{_safe(path)}:1: larger than {MAX_BYTES >> 10} KiB: not a scenario")
    if b"\0" in data:
        raise ScenarioError(f"{_safe(path)}:1: binary data (a NUL byte): not a scenario")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ScenarioError(f"{_safe(path)}:{line}: not UTF-8 text") from None
    return parse(text, path)


def from_steps(steps: list[tuple[str, dict[str, object]]], path: str, profile: str,
               bounds: dict[str, int], faults: bool, overrides: dict[str, object],
               comment: str = "") -> str:
    """The text of a `.calls` file that makes exactly these calls under this configuration
    (`show --format calls` of a trace; `run` of an ITF trace)."""
    lines = [f"# {line}" for line in comment.splitlines() if line.strip()]
    lines.append(f"profile: {profile}")
    lines.append("bounds: " + ",".join(f"{k}={v}" for k, v in bounds.items()))
    lines.append(f"faults: {'on' if faults else 'off'}")
    if overrides:
        lines.append("set: " + ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                                         for k, v in overrides.items()))
    lines += [format_call(name, params) for name, params in steps]
    return "\n".join(lines) + "\n"
