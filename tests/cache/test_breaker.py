"""Backoff and breaker state machine, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mly.cache.breaker import BreakerState, CircuitBreaker, ExponentialBackoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_backoff_doubles_from_base_up_to_cap() -> None:
    backoff = ExponentialBackoff(base_s=1.0, cap_s=30.0, jitter=0.0)
    assert [backoff.compute(n) for n in range(8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.compute(10_000) == 30.0  # no float overflow
    backoff.reset()
    assert backoff.compute(1) == 1.0


def test_backoff_jitter_only_shortens() -> None:
    backoff = ExponentialBackoff(base_s=1.0, cap_s=8.0, jitter=0.5, rng=random.Random(7))
    delays = [backoff.compute(4) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 100


@pytest.mark.parametrize("kwargs", [{"base_s": 0}, {"base_s": 2, "cap_s": 1}, {"jitter": 1.0}, {"jitter": -0.1}])
def test_backoff_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ExponentialBackoff(**kwargs)


def make_breaker(clock: FakeClock, **kwargs: object) -> CircuitBreaker:
    return CircuitBreaker(ExponentialBackoff(base_s=1.0, cap_s=30.0, jitter=0.0), clock=clock, **kwargs)  # type: ignore[arg-type]


def test_failure_opens_then_one_probe_after_backoff_and_success_closes() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_at == pytest.approx(101.0)
    clock.advance(0.999)
    assert not breaker.allow()
    clock.advance(0.002)
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # everyone else still fails fast
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.allow() and breaker.allow()


def test_failed_probe_reopens_with_a_longer_backoff() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    breaker.record_failure()
    delays = []
    for _ in range(6):
        delays.append(breaker.retry_at - clock.now)
        clock.now = breaker.retry_at
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert breaker.opened == 7
    clock.now = breaker.retry_at
    assert breaker.allow()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.retry_at - clock.now == 1.0  # success forgot the failures


def test_threshold_counts_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failure_threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_at - clock.now == 1.0


def test_cancelled_probe_is_released() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    breaker.record_failure()
    clock.advance(1.0)
    assert breaker.allow()
    breaker.release_probe()
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow()  # the next caller probes at once


def test_probe_that_never_reports_is_forgotten() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, probe_timeout_s=5.0)
    breaker.record_failure()
    clock.advance(1.0)
    assert breaker.allow()
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
