"""--prove's proofs: IC3 proves only with a certificate, `certify` accepts exactly the
certificates whose three conditions hold, and a seeded bug is never proved.

Everything runs at a tiny scope (one vm area of two frames, one chunk, one program, no
driver pointer), where one IC3 run proves v5.19's five holding invariants in seconds;
the default scope takes minutes (benchmarks/prove.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from model.bounds import Bounds
from model.profiles import SEEDED_BUGS
from model.system import System
from search import cli
from search.engines import bmc, certificate, pdr
from search.engines.symbolic import as_z3
from search.result import PROVED, UNKNOWN, VIOLATED, Result

TINY = Bounds.parse("areas=1,hpage=2,chunks=1,progs=1,refs=0")
INVARIANT = "no_stale_exec"  # its cone is the largest: the others are proved first, as facts


@pytest.fixture(scope="module")
def proof() -> pdr.Proof:
    return pdr.prove(System.build("v5.19", bounds=TINY), INVARIANT, timeout=240)


@pytest.fixture()
def saved(proof: pdr.Proof, tmp_path: Path) -> Path:
    assert proof.certificate is not None
    return certificate.save(proof.certificate, tmp_path)


def certify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = cli.main(["certify", str(path)])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line]


def edited(path: Path, **changes: Any) -> Path:
    doc = json.loads(path.read_text())
    doc.update(changes)
    target = path.with_name("edited.cert.json")
    target.write_text(json.dumps(doc))
    return target


def test_proved_with_a_certificate_that_certify_accepts(
        proof: pdr.Proof, saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert proof.result.status == PROVED, proof.result.detail
    cert = proof.certificate
    assert cert is not None and cert.profile == "v5.19" and cert.invariant == INVARIANT
    assert cert.bounds == TINY.as_dict() and cert.overrides == {} and not cert.faults
    assert cert.lemmas > 0  # the invariant alone is not inductive here: IC3 found lemmas
    assert "given " in proof.result.detail  # the smaller cones' invariants, proved first
    code, out, err = certify(saved, capsys)
    assert (code, err) == (cli.EXIT_OK, []), (out, err)
    assert out.startswith(f"valid: v5.19 {INVARIANT}")
    assert "encoding changed" not in out


def test_the_file_is_json_with_its_scope(saved: Path) -> None:
    doc = json.loads(saved.read_text())
    assert doc["format"] == certificate.FORMAT
    assert doc["flags"]["pack_invalidate"] is True  # v5.19 has fe736565efb7
    assert {"profile", "bounds", "overrides", "faults", "invariant", "variables",
            "encoding_sha256", "allocheck", "formula"} <= set(doc)
    names = [n for n, _ in doc["variables"]]
    assert "pages.refcount.0" in names and len(names) == len(set(names))
    assert doc["formula"].startswith("(assert ")


def _alone(system: System, invariant: str) -> str:
    """The invariant's own predicate as a certificate formula: weaker than the
    inductive invariant IC3 found (it lacks the lemmas)."""
    enc = bmc.Encoding.build(system)
    return certificate.to_smtlib(as_z3(enc.invariant(invariant, enc.cur)), enc)


@pytest.mark.parametrize("formula, condition", [
    ("(assert true)\n", "(c)"),  # says nothing: does not imply the invariant
    ("(assert false)\n", "(a)"),  # excludes the initial state
    ("alone", "(b)"),  # the invariant without the lemmas: not closed under a step
])
def test_a_corrupted_formula_is_invalid(saved: Path, formula: str, condition: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    if formula == "alone":
        formula = _alone(System.build("v5.19", bounds=TINY), INVARIANT)
    code, out, err = certify(edited(saved, formula=formula), capsys)
    assert code == cli.EXIT_NOT_REPRODUCED
    assert out.startswith(f"invalid: {condition}"), out
    assert len(err) == 1 and "certificate rejected" in err[0]


def test_a_certificate_moved_to_a_seeded_bug_is_invalid(
        saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # v5.19 whose set_memory_x makes the direct-map alias executable: the certificate
    # includes direct_map_integrity's invariant (proved first, as a fact), which a
    # reachable state of this configuration breaks, so it cannot be closed any more
    code, out, _ = certify(edited(saved, overrides={"cpa_alias_nx": True},
                                  invariant="direct_map_integrity"), capsys)
    assert code == cli.EXIT_NOT_REPRODUCED, out
    assert out.startswith("invalid: ")


def _malformed(saved: Path) -> list[tuple[str, Path]]:
    doc = json.loads(saved.read_text())
    out = []
    junk = saved.with_name("junk.cert.json")
    junk.write_text("{not json")
    out.append(("not JSON", junk))
    out.append(("not SMT-LIB2", edited(saved, formula="(assert (= pages.kind.0 ")))
    renamed = saved.with_name("foreign.cert.json")
    renamed.write_text(json.dumps({**doc, "formula": "(declare-const evil Bool)(assert evil)"}))
    out.append(("declares its own symbol", renamed))
    out.append(("not a state variable", edited(saved, formula="(assert evil)")))
    out.append(("changes the solver", edited(saved, formula="(set-option :timeout 1)(assert true)")))
    missing = saved.with_name("missing.cert.json")
    missing.write_text(json.dumps({k: v for k, v in doc.items() if k != "bounds"}))
    out.append(("missing bounds", missing))
    out.append(("unknown profile", edited(saved, profile="v9.99")))
    out.append(("No such file", saved.with_name("absent.cert.json")))
    return out


def test_a_malformed_certificate_is_bad_input(saved: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for why, path in _malformed(saved):
        code, out, err = certify(path, capsys)
        assert code == cli.EXIT_USAGE, (why, out, err)
        assert out == "" and len(err) == 1, (why, err)
        assert err[0].startswith("allocheck: ") and "Traceback" not in err[0]


SEEDED = [b for b in SEEDED_BUGS if b.name in ("alias-nx", "huge-compound-again")]
SEEDED_SCOPE = Bounds.parse("areas=1,hpage=2,chunks=1,progs=1,refs=1")  # a driver's pointer


@pytest.mark.parametrize("bug", SEEDED, ids=[b.name for b in SEEDED])
def test_a_seeded_bug_is_never_proved(bug: Any) -> None:
    system = System.build(bug.base, bounds=SEEDED_SCOPE, overrides=bug.all_overrides)
    # the bug shows at this scope (else the test would prove nothing)
    assert bmc.check(system, [bug.catches], 4)[bug.catches].status == VIOLATED
    p = pdr.prove(system, bug.catches, timeout=240)
    assert p.result.status == UNKNOWN and p.certificate is None
    assert p.result.detail.startswith(f"not proved: {bug.catches} is violated after")


def test_no_time_is_never_proved() -> None:
    system = System.build("v6.0", bounds=TINY)
    p = pdr.prove(system, "no_tail_as_base", timeout=0.001)
    assert p.result.status == UNKNOWN and p.certificate is None
    assert p.result.detail.startswith("not proved: ")


def test_cli_prove_prints_proved_and_saves_certificates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ALLOCHECK_CERTIFICATES", str(tmp_path / "certs"))
    code = cli.main(["--profile", "v5.19", "--bounds", "areas=1,hpage=2,chunks=1,progs=1,refs=0",
                     "--depth", "2", "--prove", "--workers", "1", "--no-save",
                     "--invariant", INVARIANT, "--invariant", "wx", "--json"])
    out, _ = capsys.readouterr()
    assert code == cli.EXIT_OK
    got = {r["invariant"]: r for r in json.loads(out)["results"]}
    assert got["wx"]["status"] == VIOLATED  # declared: never sent to the prover
    assert got[INVARIANT]["status"] == PROVED
    files = list((tmp_path / "certs").glob("*.cert.json"))
    assert [f.name.split("__")[1] for f in files] == [INVARIANT]
    assert str(files[0]) in got[INVARIANT]["detail"]
    assert got[INVARIANT]["certificate"] == str(files[0]) and got["wx"]["certificate"] is None
    assert cli.main(["certify", str(files[0])]) == cli.EXIT_OK


def test_cli_prove_saves_certificates_under_out_also_from_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # without $ALLOCHECK_CERTIFICATES, --out DIR decides, in worker processes too
    monkeypatch.delenv("ALLOCHECK_CERTIFICATES", raising=False)
    out_dir = tmp_path / "out"
    code = cli.main(["--profile", "v5.19", "--profile", "v6.0",
                     "--bounds", "areas=1,hpage=2,chunks=1,progs=1,refs=0",
                     "--depth", "2", "--prove", "--workers", "2", "--out", str(out_dir),
                     "--invariant", INVARIANT, "--json"])
    out, _ = capsys.readouterr()
    assert code == cli.EXIT_OK
    got = [r for r in json.loads(out)["results"]]
    assert [r["status"] for r in got] == [PROVED, PROVED]
    files = sorted((out_dir / "certificates").glob("*.cert.json"))
    assert [f.name.split("__")[0] for f in files] == ["v5.19", "v6.0"]
    assert sorted(r["certificate"] for r in got) == [str(f) for f in files]


def test_the_table_names_each_proofs_certificate() -> None:
    proved = Result(INVARIANT, "pdr", PROVED, 2, [], 1.0, "proved", "certs/x.cert.json")
    bounded = Result("wx", "bmc", VIOLATED, 1, [], 1.0, "")
    rows = [cli.Row("v5.19", INVARIANT, proved, "holds", False),
            cli.Row("v5.19", "wx", bounded, "violated", False)]
    out = io.StringIO()
    cli.print_table(rows, 2, "bmc", Bounds(), False, out)
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("trace or certificate")
    assert "proved (certified)" in lines[2] and lines[2].endswith("certs/x.cert.json")
    assert not lines[3].endswith(".cert.json")


def test_a_proof_shows_where_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proof can run for minutes: IC3 tells the progress line its frame, lemmas and
    queries (every query here; every 200 in a real run), naming the invariant it works on
    (a scope of its own, so that no earlier test's proof is taken from the cache)."""
    monkeypatch.setattr(pdr, "TICK_EVERY", 1)
    got: list[str] = []
    system = System.build("v5.19", bounds=Bounds.parse(
        "areas=1,hpage=2,chunks=1,progs=1,refs=0,max_ref=2"))
    p = pdr.prove(system, "no_tail_as_base", timeout=240, tick=got.append)
    assert p.result.status == PROVED
    assert got and all(t.startswith("proving ") for t in got)
    assert any(t.startswith("proving no_tail_as_base: IC3 frame ") for t in got), got[:3]
