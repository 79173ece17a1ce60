"""Single-flight bookkeeping: who evaluates, who waits, and what the waiters get."""

from __future__ import annotations

import asyncio

import pytest

from mly.service.singleflight import SingleFlight


def test_first_claimant_owns_and_later_ones_wait_for_its_value() -> None:
    async def run() -> None:
        flight = SingleFlight()
        first = flight.claim(["a", "b"], [0, 1])
        assert first.owned == [0, 1] and first.keys == ["a", "b"] and not first.waiting
        second = flight.claim(["b", "c"], [0, 1])
        assert second.owned == [1] and second.keys == ["c"] and list(second.waiting) == [0]
        flight.resolve(first.keys, [b"A", b"B"])
        assert await second.waiting[0] == b"B"
        flight.resolve(second.keys, [b"C"])
        assert len(flight) == 0

    asyncio.run(run())


def test_duplicate_rows_of_one_batch_wait_for_the_first() -> None:
    async def run() -> None:
        flight = SingleFlight()
        claim = flight.claim(["k", "k", "k"], [0, 1, 2])
        assert claim.owned == [0] and set(claim.waiting) == {1, 2}
        assert claim.waiting[1] is claim.waiting[2]
        flight.resolve(claim.keys, [b"V"])
        assert [await claim.waiting[i] for i in (1, 2)] == [b"V", b"V"]

    asyncio.run(run())


def test_an_owner_failure_reaches_every_waiter_and_frees_the_key() -> None:
    async def run() -> None:
        flight = SingleFlight()
        owner = flight.claim(["k"], [0])
        waiter = flight.claim(["k"], [0])
        flight.fail(owner.keys, RuntimeError("model failed"))
        with pytest.raises(RuntimeError, match="model failed"):
            await waiter.waiting[0]
        assert flight.claim(["k"], [0]).owned == [0]  # the next miss owns it again

    asyncio.run(run())


def test_keys_nobody_waits_for_resolve_and_fail_cleanly() -> None:
    async def run() -> None:
        flight = SingleFlight()
        claim = flight.claim(["a", "b"], [0, 1])
        flight.resolve(["a"], [b"A"])
        flight.fail(["b"], RuntimeError("x"))
        flight.resolve(["never-claimed"], [b"?"])
        assert len(flight) == 0 and claim.owned == [0, 1]

    asyncio.run(run())
