"""Which worker should be active on which shard: the shards dealt evenly over the live workers.

Every worker computes the same answer from the same list of live workers, with no coordinator: each shard
goes to the live worker ranking highest for it (rendezvous hashing, so a worker joining or leaving moves few
shards), as long as that worker has not taken its share yet; every worker ends with ``S // N`` shards or one
more. Pure: the worker feeds it the members it sees (:mod:`cfv.store.workers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection


def assign(shards: int, members: Collection[str]) -> dict[int, str]:
    """The member that should be active on each of ``shards`` shards (none when there are no members)."""
    if not members:
        return {}
    base, extra = divmod(shards, len(members))
    taken = dict.fromkeys(members, 0)
    above_base = 0  # members holding base + 1 shards: at most ``extra`` of them
    owners: dict[int, str] = {}
    for shard in range(shards):
        for member in sorted(members, key=lambda m: _rank(shard, m)):
            if taken[member] < base or (taken[member] == base and above_base < extra):
                taken[member] += 1
                above_base += taken[member] == base + 1
                owners[shard] = member
                break
    return owners


def _rank(shard: int, member: str) -> tuple[bytes, str]:
    # Lowest digest first; the name breaks a (vanishingly unlikely) tie so every worker sorts alike.
    return hashlib.blake2b(f"{shard}:{member}".encode(), digest_size=8).digest(), member
