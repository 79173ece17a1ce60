"""A batch body some of whose rows the memory tier missed, evaluated from its bytes.

Why: on candidate batches (rows repeat across requests, bodies never do) most bodies have a
few rows the cache lacks. The common path parses such a body into a Python object per value,
encodes every row, wraps each cached row in a fragment and serialises the list: several
times what the lookups and the few missing rows need. Here the keys and the memory tier's
values come from ``body_hits.lookup_body``, only the rows memory lacked are read from the
body's bytes into encoded columns (``KeySchema.rows_of_body``), the other tiers, single-flight,
the batched TensorFlow call and the write-back are ``ModelService``'s own, and the answer's
``data`` is the rows' JSON joined: the bytes ``orjson`` writes for the common path's fragments.

Only batches take it, and only bodies the native reader encodes exactly as the common path
would: for anything else (a value the encoder refuses, a single row, a model with a stream
log) ``read_rows`` returns ``None`` before anything is looked up or counted, and the common
path answers the body, errors included.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mly.common.keys import KeySchema
from mly.common.request import Encoder
from mly.service.body_hits import BodyLookup
from mly.service.generation import Generation

if TYPE_CHECKING:
    from mly.service.model_service import ModelService

__all__ = ["BodyAnswer", "BodyRows", "evaluate_rows", "read_rows"]


@dataclass(frozen=True, slots=True)
class BodyRows:
    """A batch body's keys, what the memory tier held for them, and the rows it lacked, encoded."""

    generation: Generation
    lookup: BodyLookup
    columns: dict[str, np.ndarray]
    """Every input's column of the rows the memory tier lacked, in the body's row order."""
    at: dict[int, int]
    """Row index in the body -> its place in ``columns``."""


@dataclass(frozen=True, slots=True)
class BodyAnswer:
    data: bytes
    """The answer's ``data``: every row's JSON, joined as a JSON array."""
    rows: int
    cached_rows: int
    tiers: tuple[int, ...]
    """Of ``cached_rows``: how many the memory tier, L1 and L2 answered."""
    dict_hash: int


def read_rows(service: ModelService, body: bytes | bytearray, lookup: BodyLookup, max_rows: int) -> BodyRows | None:
    """The rows of a batch ``lookup`` did not find whole in memory, ready for ``evaluate_rows``;
    ``None`` when the common path must answer the body (nothing is looked up or counted here)."""
    generation = service.current
    schema = generation.key_schema
    memory = lookup.values
    if (not lookup.batch or memory is None or service.cache is None or schema is None
            or lookup.schema is not schema or service.stream_log is not None):
        return None
    wanted = [i for i, value in enumerate(memory) if type(value) is not bytes]
    precisions, order = _plan(schema, generation.encoders)
    by_slot = schema.rows_of_body(body, wanted, precisions, max_rows)
    if by_slot is None:
        return None
    columns = {name: by_slot[k] for name, k in order}  # the encoders' order, as ``encode_columns``
    return BodyRows(generation, lookup, columns, dict(zip(wanted, range(len(wanted)))))


async def evaluate_rows(service: ModelService, read: BodyRows) -> BodyAnswer:
    """``ModelService.evaluate`` for ``read``: the other tiers, then single-flight, the batched
    evaluation of what is still missing and its write-back, all as that method does them."""
    deadline = asyncio.get_running_loop().time() + service._deadline_s
    generation, cache, keys = read.generation, service.cache, read.lookup.keys
    assert cache is not None
    lookup = read.lookup
    if lookup.complete:  # every tier was asked already (a cache with no memory tier)
        tally = list(lookup.tiers)
        results: list[bytes | None] = list(lookup.values or ())
    else:
        tally = [0, 0, 0]
        results = await cache.get_many(keys, generation.dict_hash, lookup.values, tally)
    misses = [i for i, value in enumerate(results) if value is None]
    if misses:
        await service._fill_misses(generation, cache, read.columns, keys, misses, results, deadline, read.at)
    data = b"[" + b",".join(results) + b"]"  # type: ignore[arg-type]  # every row is filled now
    return BodyAnswer(data, len(keys), len(keys) - len(misses), tuple(tally), generation.dict_hash)


Plan = tuple[tuple[int, ...], tuple[tuple[str, int], ...]]
_plans: weakref.WeakKeyDictionary[KeySchema, tuple[tuple[Encoder, ...], Plan]] = weakref.WeakKeyDictionary()


def _plan(schema: KeySchema, encoders: tuple[Encoder, ...]) -> Plan:
    """Each key slot's ``Precision`` as its encoder rounds it (0: not rounded), and each encoder's
    input with its slot; worked out once per generation (kept while its key schema lives)."""
    kept = _plans.get(schema)
    if kept is not None and kept[0] is encoders:
        return kept[1]
    slot = {s.name: k for k, s in enumerate(schema.slots)}
    precision = {name: p for name, _code, p in encoders}
    plan = (tuple(precision[s.name] for s in schema.slots), tuple((name, slot[name]) for name, _code, _p in encoders))
    _plans[schema] = (encoders, plan)
    return plan
