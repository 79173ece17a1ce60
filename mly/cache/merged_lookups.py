"""Which merged lookups each part of one merged read answers.

Lookups made in one turn of the event loop are read together (Aerospike: one batch read per node;
a Redis Cluster: one ``GET`` pipeline per master), their keys end to end. Each lookup must still be
answered as soon as the reads holding its own keys replied, and fail only when one of those fails,
as it would alone: a node that is paused or gone must not hold up the lookups with no key on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["lookups_per_read"]


def lookups_per_read(parts: Sequence[tuple[int, int, Any]],
                     reads: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """Per read (the positions of its keys in the merged keys), the indices of the lookups with a
    key in it; per lookup, how many reads it waits for. ``parts``: ``(offset, count, ...)`` per
    lookup, in key order."""
    if len(parts) == 1:
        return [[0]] * len(reads), [len(reads)]
    if len(reads) == 1:
        return [list(range(len(parts)))], [1] * len(parts)
    part_of: list[int] = []
    for p, (_, count, *_) in enumerate(parts):
        part_of += [p] * count
    members = [list({part_of[i] for i in read}) for read in reads]
    pending = [0] * len(parts)
    for touched in members:
        for p in touched:
            pending[p] += 1
    return members, pending
