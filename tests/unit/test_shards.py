"""Shards dealt over workers: evenly, the same for every worker that sees the same members, few moved."""

from __future__ import annotations

import random

import pytest
from cfv.worker.shards import assign


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 16, 64])
@pytest.mark.parametrize("workers", [1, 2, 3, 5, 8, 70])
def test_every_shard_has_one_owner_and_shares_differ_by_one_at_most(shards: int, workers: int) -> None:
    members = [f"w{n}" for n in range(workers)]
    owners = assign(shards, members)
    assert sorted(owners) == list(range(shards))
    counts = [list(owners.values()).count(m) for m in members]
    assert sum(counts) == shards
    assert max(counts) - min(counts) <= 1
    assert min(counts) == shards // workers


def test_every_worker_computes_the_same_assignment_whatever_order_it_sees_the_members_in() -> None:
    members = [f"worker-{n:02}" for n in range(6)]
    expected = assign(16, members)
    for seed in range(20):
        shuffled = list(members)
        random.Random(seed).shuffle(shuffled)
        assert assign(16, shuffled) == expected
        assert assign(16, set(shuffled)) == expected


def test_two_workers_share_four_shards_two_each() -> None:
    owners = assign(4, ["a3f9", "07c1"])
    assert sorted(list(owners.values()).count(m) for m in ("a3f9", "07c1")) == [2, 2]


def test_a_worker_leaving_moves_its_shards_and_few_others() -> None:
    members = [f"w{n}" for n in range(4)]
    before = assign(64, members)
    after = assign(64, members[:3])
    moved_from_others = [s for s, owner in before.items() if owner != "w3" and after[s] != owner]
    assert all(after[s] != "w3" for s in after)
    # The leaver's 16 shards must move; rebalancing the rest to 21 or 22 each should move only a handful more.
    assert len(moved_from_others) <= 8, moved_from_others


def test_a_worker_joining_takes_its_share_mostly_from_the_others_surplus() -> None:
    members = [f"w{n}" for n in range(3)]
    before = assign(60, members)
    after = assign(60, [*members, "w3"])
    assert list(after.values()).count("w3") == 15
    moved = [s for s in before if before[s] != after[s]]
    assert len(moved) <= 15 + 8, moved


def test_no_members_no_owners() -> None:
    assert assign(4, []) == {}
