"""A request body's rows looked up in the memory tier straight from its bytes.

Why: on traffic whose rows repeat while whole bodies do not (a page asking for scores of N
candidates), most batches are answered entirely from the memory tier. Parsing such a body
into Python objects, keying every row from them, wrapping each hit in a fragment and
serialising the list cost several times the lookups themselves. Here the keys come from the
body's bytes in one native pass (``KeySchema.keys_of_body``), the memory tier is read once,
and an all-hit answer is the hits joined: the bytes ``orjson`` would write for the same
fragments. Any other body (not the plain shape, a miss) goes the common way, carrying what was
read here so nothing is looked up twice.

A cache with no memory tier (a fleet's shared Redis or Aerospike as the only tier) gets the same
treatment with one wait: the keys from the body's bytes, one lookup per store, and the stored row
JSON joined (``lookup_body_in_stores``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mly.cache.tiered import TieredCache
from mly.common.keys import KeySchema
from mly.service.generation import Generation

__all__ = ["BodyLookup", "keys_for_stores", "lookup_body", "lookup_body_in_stores", "stored_lookup"]


@dataclass(frozen=True, slots=True)
class BodyLookup:
    schema: KeySchema
    """The key schema the keys were built with: a reload in between makes them another model's."""
    keys: list[str]
    batch: bool
    found: bytes | list[Any]
    """``TieredCache.memory_hits``: every row's JSON joined as the answer's ``data`` (a list for a
    batch, one row's otherwise) when all hit, else the memory tier's value per key."""
    complete: bool = False
    """``found`` is the whole cache's answer (every tier was asked), not the memory tier's alone."""
    tiers: tuple[int, int, int] = (0, 0, 0)
    """Rows each tier answered (memory, L1, L2) when ``complete``."""

    @property
    def all_hit(self) -> bool:
        return type(self.found) is bytes

    @property
    def values(self) -> list[Any] | None:
        return None if type(self.found) is bytes else self.found  # type: ignore[return-value]


def lookup_body(generation: Generation, cache: TieredCache | None, body: bytes | bytearray,
                max_rows: int) -> BodyLookup | None:
    """``None`` when the body is not plain (the common path parses it and decides) or there is
    no memory tier to read without waiting."""
    schema = generation.key_schema
    if schema is None or cache is None or cache.memory is None:
        return None
    keyed = schema.keys_of_body(body, max_rows)
    if keyed is None:
        return None
    keys, batch = keyed
    return BodyLookup(schema, keys, batch, cache.memory_hits(keys, generation.dict_hash, batch))


def keys_for_stores(generation: Generation, cache: TieredCache | None, body: bytes | bytearray,
                    max_rows: int) -> tuple[KeySchema, list[str], bool] | None:
    """The key schema, keys and batch flag of a body for a cache whose only tiers are external
    stores; ``None`` when the body is not plain (or has no rows) or there is a memory tier."""
    schema = generation.key_schema
    if schema is None or cache is None or cache.memory is not None:
        return None
    keyed = schema.keys_of_body(body, max_rows)
    if keyed is None or not keyed[0]:
        return None
    return schema, keyed[0], keyed[1]


def stored_lookup(schema: KeySchema, keys: list[str], batch: bool, found: list[bytes | None],
                  tiers: tuple[int, int, int]) -> BodyLookup:
    """What the stores answered for a body's keys: the rows joined as the answer's ``data`` when
    every one was found, else the row (or ``None``) per key."""
    if None in found:
        return BodyLookup(schema, keys, batch, found, complete=True, tiers=tiers)
    data = b"[" + b",".join(found) + b"]" if batch else found[0]  # type: ignore[arg-type]
    return BodyLookup(schema, keys, batch, data, complete=True, tiers=tiers)  # type: ignore[arg-type]


async def lookup_body_in_stores(generation: Generation, cache: TieredCache | None, body: bytes | bytearray,
                                max_rows: int) -> BodyLookup | None:
    """``lookup_body`` for a cache whose only tiers are external stores: ``None`` when the body
    is not plain or there is a memory tier (``lookup_body`` then)."""
    keyed = keys_for_stores(generation, cache, body, max_rows)
    if keyed is None:
        return None
    assert cache is not None
    schema, keys, batch = keyed
    tally = [0, 0, 0]
    found = await cache.get_many(keys, generation.dict_hash, tally=tally)
    return stored_lookup(schema, keys, batch, found, (tally[0], tally[1], tally[2]))
