"""The engines agree: on small bounds, BFS (exhaustive, concrete) and BMC (z3) find a
violation within the depth for exactly the same profile x invariant pairs, at the same
shortest depth, and every BMC trace replays on the concrete model."""

from __future__ import annotations

import pytest

from invariants import INVARIANTS
from model.bounds import Bounds
from model.logic import CONCRETE
from model.profiles import PROFILES, QUIET_USERS
from model.system import System
from search.engines import bfs, bmc
from search.result import VIOLATED

SMALL = Bounds(frames=4, hpage=2, areas=2, chunks=2, progs=2, refs=1, max_ref=2)
DEPTH = 4


@pytest.mark.parametrize("faults", [False, True], ids=["", "faults"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_bfs_and_bmc_agree(profile: str, faults: bool) -> None:
    system = System.build(profile, bounds=SMALL, faults=faults)
    names = list(INVARIANTS)
    by_bfs = bfs.check(system, names, DEPTH)
    by_bmc = bmc.check(system, names, DEPTH)
    for name in names:
        a, b = by_bfs[name], by_bmc[name]
        assert (a.status == VIOLATED) == (b.status == VIOLATED), (name, a, b)
        if a.status == VIOLATED:
            assert a.depth == b.depth, (name, a.depth, b.depth)
            s = system.initial()
            for inst in b.steps:
                assert inst.guard(s, system.ctx, CONCRETE)
                s = system.step(s, inst)
            assert not INVARIANTS[name](s, system.ctx, CONCRETE)


def test_bfs_exhausts_a_tiny_space() -> None:
    tiny = Bounds(frames=2, hpage=2, areas=1, chunks=1, progs=1, refs=0, max_ref=2)
    # 5.19's 2022 paths (its trampolines and kprobes pages break wx and no_exec_uninit)
    system = System.build("v5.19", bounds=tiny, overrides=QUIET_USERS)
    res = bfs.check(system, list(INVARIANTS), 30)
    # exhaustive, so a proof in fact; "proved" is kept for results with a certificate
    assert {r.status for r in res.values()} == {"holds"}, res
    assert all(r.detail.startswith("exhaustive: all ") for r in res.values()), res


def test_bfs_finds_the_shortest_stale_exec() -> None:
    system = System.build("v5.18.y")
    res = bfs.check(system, ["no_stale_exec"], 4)["no_stale_exec"]
    assert (res.status, res.depth) == (VIOLATED, 4)
    assert [i.name for i in res.steps] == ["alloc_new_pack", "bpf_prog_pack_alloc",
                                           "bpf_arch_text_copy", "bpf_prog_pack_free"]
