"""Two NUMA nodes: what each profile's history gains at `--bounds numa` (nodes=2).

5.18-rc1 sized a pack BPF_HPAGE_SIZE * num_online_nodes() and looked it up with
BPF_HPAGE_MASK, so a program beyond the pack's first PMD is never found when freed
(profiles.py has the quotes); 6.0 looks packs up by range; 5.18 and 5.19 use 4 KiB packs.
"""

from __future__ import annotations

import pytest

from model.bounds import DEFAULT_BOUNDS, NUMA_BOUNDS, Bounds, BoundsError
from model.profiles import PROFILES
from model.system import System
from search.engines import bmc
from search.result import HOLDS, VIOLATED

PACKS = [name for name, p in PROFILES.items() if p.flags.bpf_prog_pack]


@pytest.mark.parametrize("profile", PACKS)
def test_two_nodes_add_what_the_profile_declares(profile: str) -> None:
    declared = PROFILES[profile].violated_with_nodes
    r = bmc.check(System.build(profile, bounds=NUMA_BOUNDS), ["pack_bookkeeping"], 4)
    want = VIOLATED if "pack_bookkeeping" in declared else HOLDS
    assert r["pack_bookkeeping"].status == want, (profile, r["pack_bookkeeping"].steps)
    if want == VIOLATED:
        # the second program's chunk is in the pack's second PMD: its free finds no pack
        names = [i.action.name for i in r["pack_bookkeeping"].steps]
        assert names == ["alloc_new_pack", "bpf_prog_pack_alloc", "bpf_prog_pack_free"]
        one = bmc.check(System.build(profile, bounds=DEFAULT_BOUNDS), ["pack_bookkeeping"], 4)
        assert one["pack_bookkeeping"].status == HOLDS


def test_nodes_must_divide_the_chunks() -> None:
    with pytest.raises(BoundsError):
        Bounds(nodes=3)
    assert "nodes" not in DEFAULT_BOUNDS.as_dict()
    assert NUMA_BOUNDS.as_dict()["nodes"] == 2
    assert Bounds.parse("numa") == NUMA_BOUNDS
    assert Bounds.parse("nodes=2") == NUMA_BOUNDS
