"""``AsyncClient`` and ``Client`` are twins: the same calls give the same answers and the
same requests, and a local hit makes no request on either."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from mly.client import AsyncClient, Client
from mly.client.errors import InputError, NotFoundError

MODEL = "k"


@dataclasses.dataclass
class Prediction:
    score: float
    label_id: int


ROWS = [{"sa": sa, "sl": "c", "i1": i1, "fl": fl} for sa, i1, fl in
        [("a", 10, 11.5), ("b", 20, 12.5), ("zz", 30, 13.5), ("c", 40, 14.5)]]


def scenario_sync(client: Client, counter: Any) -> list[tuple[Any, ...]]:
    out = []
    for call in (lambda: client.predict(ROWS[0]), lambda: client.predict(ROWS[0]),
                 lambda: client.predict(ROWS), lambda: client.predict(ROWS, into=Prediction),
                 lambda: client.run(client.new_message().set_batch_size(2).strings_key("sa", ["a", "q"])
                                    .strings_key("sl", ["c"]).ints_key("i1", [10]).floats_key("fl", [11.5]))):
        before = counter.evals
        r = call()
        out.append((r.status, r.data, r.dict_hash, r.cached_rows, counter.evals - before))
    return out


async def scenario_async(client: AsyncClient, counter: Any) -> list[tuple[Any, ...]]:
    out = []
    calls = (lambda: client.predict(ROWS[0]), lambda: client.predict(ROWS[0]),
             lambda: client.predict(ROWS), lambda: client.predict(ROWS, into=Prediction),
             lambda: client.run(client.new_message().set_batch_size(2).strings_key("sa", ["a", "q"])
                                .strings_key("sl", ["c"]).ints_key("i1", [10]).floats_key("fl", [11.5])))
    for call in calls:
        before = counter.evals
        r = await call()
        out.append((r.status, r.data, r.dict_hash, r.cached_rows, counter.evals - before))
    return out


def test_sync_and_async_clients_agree(cserver: Any) -> None:
    with Client(MODEL, hosts=[cserver.address]) as client:
        sync = scenario_sync(client, cserver.counter)

    async def run() -> list[tuple[Any, ...]]:
        async with AsyncClient(MODEL, hosts=[cserver.address]) as aclient:
            return await scenario_async(aclient, cserver.counter)

    # A fresh client of each kind: same statuses, data, hashes, local hits, and requests.
    assert asyncio.run(run()) == sync
    statuses = [s[0] for s in sync]
    assert statuses == ["ok", "cached", "ok", "cached", "ok"]
    assert [s[4] for s in sync] == [1, 0, 1, 0, 1]


def test_async_errors_and_lazy_start(cserver: Any) -> None:
    async def run() -> None:
        client = AsyncClient(MODEL, hosts=[cserver.address])
        try:
            before = cserver.counter.evals
            with pytest.raises(InputError, match=r"^i1: "):
                await client.predict({"sa": "a", "sl": "b", "i1": 1.5, "fl": 1.0})  # starts, then validates
            assert cserver.counter.evals == before
        finally:
            await client.aclose()
        with pytest.raises(NotFoundError) as missing:
            async with AsyncClient("nope", hosts=[cserver.address]):
                pass
        assert missing.value.status == 404

    asyncio.run(run())
