"""Proof certificates: an inductive invariant, what it is about, and its independent check.

A `proved` is only as good as the engine that printed it, so the engine's word is not
taken: the inductive invariant it found is written down as SMT-LIB2 text over the
flattened state variables (named by their `model.state.leaves` paths), together with
the configuration it is about, and a separate plain `z3.Solver()` checks, against the
step relation `search.engines.bmc.Encoding` builds from the model:

- (a) initial: the initial state satisfies Inv;
- (b) closed: Inv(s) & T(s, s', sel) -> Inv(s') for every action instance (the selector
  is free, so one query covers them all; a failure names the instance);
- (c) safe: Inv(s) -> the invariant.

(b) assumes nothing else about s, not even well-formedness: an engine that relies on
well-formedness puts it into Inv, where (a) and (b) check it too.

The file is JSON and is only ever parsed: the formula by `z3.parse_smt2_string` against
the declared variables (any other symbol is refused), never by eval or pickle. `certify`
rebuilds the system from the file's profile, overrides, bounds and faults, so a
certificate is checked against the model as it is now; the encoding hash says whether
that is still the model it was made for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import z3

from invariants import INVARIANTS
from model.logic import WIDTH
from model.state import State, rebuild
from model.state import leaves as state_leaves
from model.system import System
from search.engines.bmc import Encoding, _remaining_ms
from search.engines.symbolic import as_z3, distinct_subterms, equal_to, flat, fresh_state

FORMAT = "allocheck-certificate/1"
MAX_BYTES = 64 << 20  # a certificate file larger than this is refused unread
KEYS = frozenset({"format", "profile", "overrides", "flags", "bounds", "faults", "invariant",
                  "engine", "formula", "variables", "encoding_sha256", "allocheck",
                  "seconds", "lemmas"})


class CertificateError(ValueError):
    """A certificate file that cannot be read or does not describe a system: one line."""


@dataclass
class Certificate:
    """An inductive invariant (SMT-LIB2 text, one or more `assert`s) and its scope."""

    profile: str
    overrides: dict[str, Any]
    bounds: dict[str, int]
    faults: bool
    invariant: str
    formula: str
    variables: list[tuple[str, str]]  # (name, SMT-LIB sort)
    encoding_sha256: str
    allocheck: str
    engine: str = "pdr"
    seconds: float = 0.0
    lemmas: int = 0
    # every flag as the profile and overrides set them when the certificate was made:
    # for a reader; `certify` rebuilds them from profile and overrides
    flags: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "profile": self.profile, "overrides": self.overrides,
                "flags": self.flags if self.flags is not None else self.system().flags.as_dict(),
                "bounds": self.bounds, "faults": self.faults, "invariant": self.invariant,
                "engine": self.engine, "seconds": round(self.seconds, 3),
                "lemmas": self.lemmas, "allocheck": self.allocheck,
                "encoding_sha256": self.encoding_sha256,
                "variables": [list(v) for v in self.variables], "formula": self.formula}

    def system(self) -> System:
        from model.bounds import Bounds

        return System.build(self.profile, bounds=Bounds(**self.bounds), faults=self.faults,
                            overrides=self.overrides)


@dataclass
class Verdict:
    """The outcome of `check`: `valid` True/False, or None when z3 could not tell."""

    valid: bool | None
    reason: str  # the condition that failed, or why unknown; "" when valid
    seconds: float
    same_encoding: bool = True


# ---- the variables the formula is about ---------------------------------------------


def _sort_name(v: Any) -> str:
    return "Bool" if z3.is_bool(v) else f"(_ BitVec {v.size()})"


def named_state(template: State) -> State:
    """A symbolic state whose leaves are named by their paths alone (`pages.kind.0`):
    the names a certificate's formula uses."""
    vals = []
    for path, v in state_leaves(template):
        is_bool = isinstance(v, bool) or (isinstance(v, z3.ExprRef) and z3.is_bool(v))
        vals.append(z3.Bool(path) if is_bool else z3.BitVec(path, WIDTH))
    return rebuild(template, vals)


def variables(state: State) -> list[tuple[str, str]]:
    return [(str(v), _sort_name(v)) for v in (as_z3(x) for x in flat(state))]


def encoding_hash(enc: Encoding) -> str:
    """SHA-256 of the step relation, the initial state and every invariant as z3 prints
    them over the template state: changes when the model (or a profile flag) does."""
    h = hashlib.sha256()
    h.update(enc.relation.sexpr().encode())
    h.update(equal_to(enc.cur, enc.system.initial()).sexpr().encode())
    for name in INVARIANTS:
        h.update(name.encode())
        h.update(as_z3(enc.invariant(name, enc.cur)).sexpr().encode())
    return h.hexdigest()


def to_smtlib(inv: Any, enc: Encoding) -> str:
    """`inv` (a z3 Bool over `enc.cur`) as SMT-LIB2 assertions over the path-named
    variables, one per conjunct (one lemma per line, for a reader). The variables are
    declared by the certificate's `variables`, not in the text: `declarations` writes
    them out for a standalone SMT-LIB2 file."""
    named = named_state(enc.cur)
    pairs = [(a, as_z3(b)) for a, b in zip(flat(enc.cur), flat(named), strict=True)]
    parts = _conjuncts(z3.substitute(inv, *pairs))
    return "\n".join(f"(assert {' '.join(p.sexpr().split())})" for p in parts) + "\n"


def _conjuncts(term: Any) -> list[Any]:
    """The conjuncts of nested `and`s, in order: one assertion per lemma."""
    out: list[Any] = []
    todo = [term]
    while todo:
        t = todo.pop()
        if z3.is_and(t):
            todo.extend(reversed(t.children()))
        else:
            out.append(t)
    return out


def declarations(cert: Certificate) -> str:
    """The `declare-const` lines of the certificate's variables (SMT-LIB2)."""
    return "".join(f"(declare-const {_symbol(n)} {s})\n" for n, s in cert.variables)


def _symbol(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", name) else f"|{name}|"


def make(system: System, invariant: str, inv: Any, enc: Encoding, engine: str,
         seconds: float, lemmas: int) -> Certificate:
    from search.traces.itf import allocheck_version

    return Certificate(system.profile.name, dict(system.overrides), system.bounds.as_dict(),
                       system.faults, invariant, to_smtlib(inv, enc),
                       variables(named_state(enc.cur)), encoding_hash(enc),
                       allocheck_version(), engine, seconds, lemmas, system.flags.as_dict())


# ---- the check ----------------------------------------------------------------------


def parse_formula(text: str, state: State) -> Any:
    """The conjunction of the assertions of `text`, whose only free symbols may be the
    leaves of `state`. Raises CertificateError otherwise."""
    decls = {str(v): v for v in (as_z3(x) for x in flat(state))}
    for head in _commands(text):
        if head != "assert":
            raise CertificateError(f"the formula may only assert; it has {head[:40]!r}")
    try:
        asserted = z3.parse_smt2_string(text, decls=decls)
    except z3.Z3Exception as e:
        msg = e.value.decode(errors="replace") if isinstance(e.value, bytes) else str(e.value)
        first = (msg.strip().splitlines() or ["?"])[0][:200]
        raise CertificateError(f"the formula is not SMT-LIB2 z3 accepts: {first}") from None
    if len(asserted) == 0:
        raise CertificateError("the formula asserts nothing")
    term = z3.And(*asserted)
    _only_declared(term, decls)
    return term


def _commands(text: str) -> list[str]:
    """The head of every top-level SMT-LIB2 command in `text`, skipping strings, quoted
    symbols and comments: a certificate may assert, and nothing else (no set-option or
    push that would change how the checking solver behaves)."""
    heads: list[str] = []
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == ";":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if ch in "|\"":
            j = text.find(ch, i + 1)
            if j < 0:
                raise CertificateError("the formula has an unterminated quote")
            i = j + 1
            continue
        if ch == "(":
            if depth == 0:
                m = re.match(r"\(\s*([^\s()|\";]*)", text[i:])
                heads.append(m.group(1) if m else "")
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise CertificateError("the formula has an unbalanced ')'")
        elif depth == 0 and not ch.isspace():
            raise CertificateError("the formula has text outside any command")
        i += 1
    return heads


def _only_declared(term: Any, decls: dict[str, Any]) -> None:
    """Every uninterpreted symbol in `term` is one of the declared state variables, with
    the declared sort (a formula that declares its own symbols is about something else)."""
    for t in distinct_subterms(term):
        if z3.is_quantifier(t):
            raise CertificateError("the formula has a quantifier; an invariant here is "
                                   "quantifier-free")
        if z3.is_app(t) and t.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            name = t.decl().name()
            if t.num_args() or name not in decls or not decls[name].eq(t):
                raise CertificateError(f"the formula uses {name[:60]!r}, which is not a "
                                       "state variable")


def _solver(deadline: float | None) -> z3.Solver:
    s = z3.Solver()  # deliberately plain: nothing of the engine that found the invariant
    s.set("random_seed", 0)
    s.set("timeout", _remaining_ms(deadline))
    return s


def check_formula(system: System, invariant: str, inv_text: str,
                  timeout: float | None = None, enc: Encoding | None = None) -> Verdict:
    """Conditions (a), (b), (c) of the module docstring for the formula `inv_text`."""
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    if invariant not in INVARIANTS:
        raise CertificateError(f"unknown invariant {invariant[:60]!r}")
    enc = enc or Encoding.build(system)
    s0 = named_state(enc.cur)
    s1 = fresh_state(enc.cur, "next")
    inv0 = parse_formula(inv_text, s0)
    inv1 = z3.substitute(inv0, *[(as_z3(a), as_z3(b))
                                 for a, b in zip(flat(s0), flat(s1), strict=True)])
    sel = z3.BitVec("certificate.sel", enc.sel.size())
    queries = [
        ("(a) the initial state does not satisfy it",
         [equal_to(s0, system.initial()), z3.Not(inv0)]),
        ("(b) it is not closed under the step relation",
         [inv0, enc.step(s0, s1, sel), z3.Not(inv1)]),
        (f"(c) it does not imply {invariant}",
         [inv0, z3.Not(as_z3(enc.invariant(invariant, s0)))]),
    ]
    for label, facts in queries:
        s = _solver(deadline)
        s.add(*facts)
        r = s.check()
        if r == z3.unknown:
            return Verdict(None, f"{label[:3]} z3 answered unknown ({s.reason_unknown()})",
                           time.monotonic() - t0)
        if r == z3.sat:
            why = label
            if label.startswith("(b)"):
                idx = s.model().eval(sel, model_completion=True).as_long()
                if idx < len(system.instances):
                    why = f"{label}: {system.instances[idx]} leaves it"
            return Verdict(False, why, time.monotonic() - t0)
    return Verdict(True, "", time.monotonic() - t0)


def check(cert: Certificate, timeout: float | None = None) -> Verdict:
    """Rebuild the certificate's system from scratch and check its formula."""
    system = cert.system()
    enc = Encoding.build(system)
    declared = variables(named_state(enc.cur))
    if [tuple(v) for v in cert.variables] != declared:
        return Verdict(False, "its variables are not the state variables of this "
                       "configuration (names or sorts differ)", 0.0)
    v = check_formula(system, cert.invariant, cert.formula, timeout, enc)
    v.same_encoding = encoding_hash(enc) == cert.encoding_sha256
    return v


# ---- files --------------------------------------------------------------------------


def file_name(cert: Certificate) -> str:
    """`v5.19__wx__<hash>.cert.json`: profile and invariant, then a short hash of the
    whole configuration (overrides, bounds, faults), so that two scopes never collide."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", cert.profile)
    key = json.dumps({"overrides": cert.overrides, "bounds": cert.bounds,
                      "faults": cert.faults}, sort_keys=True)
    return f"{safe}__{cert.invariant}__{hashlib.sha256(key.encode()).hexdigest()[:10]}.cert.json"


def save(cert: Certificate, folder: str | os.PathLike[str]) -> Path:
    """Write `cert` into `folder` (created if missing) atomically, as traces are."""
    from search.traces.itf import write_atomic

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(cert.to_json(), indent=1, sort_keys=True) + "\n"
    return write_atomic(out / file_name(cert), text.encode())


def load(path: str | os.PathLike[str]) -> Certificate:
    """Read and validate a certificate file; CertificateError on anything wrong."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise CertificateError(f"{name}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise CertificateError(f"{name}: larger than {MAX_BYTES >> 20} MiB")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CertificateError(f"{name}: not JSON ({e})") from None
    try:
        return _from_json(doc)
    except CertificateError as e:
        raise CertificateError(f"{name}: {e}") from None


def _from_json(doc: Any) -> Certificate:
    from model.bounds import Bounds, BoundsError
    from model.profiles import ProfileError, get_profile

    if not isinstance(doc, dict):
        raise CertificateError("not a JSON object")
    if doc.get("format") != FORMAT:
        raise CertificateError(f"format is not {FORMAT!r}")
    missing = sorted(KEYS - set(doc))
    if missing:
        raise CertificateError(f"missing {', '.join(missing)}")
    extra = sorted(set(doc) - KEYS)
    if extra:
        raise CertificateError(f"unknown field {extra[0][:40]!r}")
    kinds = {"profile": str, "overrides": dict, "flags": dict, "bounds": dict, "faults": bool,
             "invariant": str, "engine": str, "formula": str, "variables": list,
             "encoding_sha256": str, "allocheck": str, "lemmas": int}
    for key, kind in kinds.items():
        if not isinstance(doc[key], kind) or (kind is int and isinstance(doc[key], bool)):
            raise CertificateError(f"{key} is not a {kind.__name__}")
    if not isinstance(doc["seconds"], int | float) or isinstance(doc["seconds"], bool):
        raise CertificateError("seconds is not a number")
    if doc["invariant"] not in INVARIANTS:
        raise CertificateError(f"unknown invariant {doc['invariant'][:60]!r}")
    vs = doc["variables"]
    if not all(isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
               for v in vs):
        raise CertificateError("variables is not a list of [name, sort] pairs")
    try:
        prof = get_profile(doc["profile"])
        flags = prof.flags.with_overrides(doc["overrides"])
        del flags
        bounds = Bounds(**doc["bounds"])
    except (ProfileError, BoundsError) as e:
        raise CertificateError(str(e)) from None
    except TypeError:
        raise CertificateError("bounds has an unknown field") from None
    return Certificate(doc["profile"], dict(doc["overrides"]), bounds.as_dict(), doc["faults"],
                       doc["invariant"], doc["formula"], [(a, b) for a, b in vs],
                       doc["encoding_sha256"], doc["allocheck"], doc["engine"],
                       float(doc["seconds"]), doc["lemmas"], dict(doc["flags"]))
