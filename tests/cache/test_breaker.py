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


def test_default_probe_interval_is_short_and_capped_at_one_second() -> None:
    backoff = CircuitBreaker().backoff
    delays = [backoff.compute(n) for n in range(1, 50)]
    assert all(0.0 < d <= 1.0 for d in delays)
    assert max(delays) > 0.75  # the cap is reached, not stuck at the base


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


def test_failures_of_calls_in_flight_when_it_opened_count_once() -> None:
    """Under load many lookups are in flight when a store dies: one outage, one failure."""
    clock = FakeClock()
    breaker = make_breaker(clock)
    in_flight = [clock() for _ in range(50)]  # 50 calls start while the store is fine
    clock.advance(0.2)
    assert breaker.record_failure(in_flight[0])  # the first failure opens
    opened_retry_at = breaker.retry_at
    for started in in_flight[1:]:
        clock.advance(0.01)
        assert not breaker.record_failure(started)  # the rest of the cohort changes nothing
    assert (breaker.failures, breaker.opened, breaker.retry_at) == (1, 1, opened_retry_at)
    clock.now = breaker.retry_at
    probe_started = clock()
    assert breaker.allow()
    clock.advance(0.1)
    assert breaker.record_failure(probe_started)  # a failed probe does count
    assert (breaker.failures, breaker.opened) == (2, 2)
    assert breaker.retry_at - clock.now == 2.0


def test_late_failure_after_recovery_of_an_old_call_is_ignored() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    slow_call = clock()
    clock.advance(0.1)
    breaker.record_failure(clock())
    clock.now = breaker.retry_at
    assert breaker.allow()
    breaker.record_success()  # the probe found the store back
    assert not breaker.record_failure(slow_call)  # a straggler from before the outage
    assert breaker.state is BreakerState.CLOSED
    assert breaker.record_failure(clock())  # a new failure still opens at once
    assert breaker.state is BreakerState.OPEN
