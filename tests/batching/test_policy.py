"""Wait policies, pure: made-up clocks and observations, no asyncio, no model."""

from __future__ import annotations

import itertools
import random

import pytest

from mly.batching.policy import AdaptiveWait, FixedWait, make_policy

US = 1e-6


def trained(a_us: float, b_us: float, *, seed: int = 1, calls: int = 200, noise: float = 0.0) -> AdaptiveWait:
    policy = AdaptiveWait(max_wait_us=5000)
    rng = random.Random(seed)
    for _ in range(calls):
        rows = rng.randint(1, 64)
        cost = (a_us + b_us * rows) * US
        policy.ran(rows, cost * (1 + rng.uniform(-noise, noise)))
    return policy


def arrive(policy: AdaptiveWait, gap_us: float, count: int, start: float = 0.0, rows: int = 1) -> float:
    now = start
    for _ in range(count):
        now += gap_us * US
        policy.arrived(now, rows)
    return now


def test_fixed_wait_counts_from_the_first_request_not_rolling() -> None:
    policy = FixedWait(500)
    assert policy.dispatch_at(10.0, 10.0, 1, 1) == pytest.approx(10.0005)
    assert policy.dispatch_at(10.0, 10.0004, 7, 9) == pytest.approx(10.0005)
    assert policy.current_wait_us() == 500
    assert FixedWait(0).dispatch_at(10.0, 10.0, 1, 1) is None
    with pytest.raises(ValueError):
        FixedWait(-1)


def test_make_policy_picks_the_rule() -> None:
    assert isinstance(make_policy(300, adaptive=True), AdaptiveWait)
    fixed = make_policy(300, adaptive=False)
    assert isinstance(fixed, FixedWait) and fixed.current_wait_us() == 300


def test_adaptive_learns_fixed_and_per_row_cost() -> None:
    policy = trained(350, 5)
    assert policy.fixed_cost_s == pytest.approx(350 * US, rel=1e-6)
    assert policy.row_cost_s == pytest.approx(5 * US, rel=1e-6)
    noisy = trained(350, 5, noise=0.05, calls=400)
    assert noisy.fixed_cost_s == pytest.approx(350 * US, rel=0.15)
    assert noisy.row_cost_s == pytest.approx(5 * US, rel=0.15)


def test_adaptive_follows_a_changed_model() -> None:
    policy = trained(350, 5)
    rng = random.Random(2)
    for _ in range(300):
        rows = rng.randint(1, 64)
        policy.ran(rows, (1000 + 2 * rows) * US)
    assert policy.fixed_cost_s == pytest.approx(1000 * US, rel=0.02)
    assert policy.row_cost_s == pytest.approx(2 * US, rel=0.05)


def test_uniform_batch_sizes_count_all_cost_as_fixed_until_sizes_vary() -> None:
    policy = AdaptiveWait()
    for _ in range(50):
        policy.ran(1, 400 * US)
    assert policy.row_cost_s == 0.0
    assert policy.fixed_cost_s == pytest.approx(400 * US)
    # Once b is known it is kept while sizes are uniform again.
    policy = trained(350, 5)
    for _ in range(500):
        policy.ran(8, (350 + 5 * 8) * US)
    assert policy.row_cost_s == pytest.approx(5 * US, rel=0.01)
    assert policy.fixed_cost_s == pytest.approx(350 * US, rel=0.01)


def test_no_wait_before_any_call_was_timed_or_with_one_arrival() -> None:
    policy = AdaptiveWait()
    now = arrive(policy, 10, 50)
    assert policy.dispatch_at(now, now, 1, 1) is None  # a unknown (0): nothing to amortise
    fresh = trained(350, 5)
    fresh.arrived(1.0, 1)
    assert fresh.dispatch_at(1.0, 1.0, 1, 1) is None  # no gap measured yet


def test_no_wait_at_low_load() -> None:
    policy = trained(350, 5)
    now = arrive(policy, 10_000, 30)  # one request every 10 ms
    assert policy.dispatch_at(now, now, 1, 1) is None
    assert policy.current_wait_us() == 0


def test_a_lone_closed_loop_client_is_not_held() -> None:
    # One client: the next request comes only after the answer, so the gap is the call's cost.
    policy = AdaptiveWait()
    now = 0.0
    for _ in range(100):
        policy.arrived(now, 1)
        policy.ran(1, 400 * US)
        now += 430 * US
        assert policy.dispatch_at(now, now, 1, 1) is None


def test_dense_arrivals_hold_for_the_patience() -> None:
    policy = trained(350, 5)
    now = arrive(policy, 20, 50)
    due = policy.dispatch_at(now, now, 1, 1)
    assert due is not None
    assert due - now == pytest.approx((350 - 5) * US, rel=1e-3)  # patience(1) = a - b*r
    assert policy.current_wait_us() == pytest.approx(345, rel=1e-3)


def test_costlier_calls_are_held_longer() -> None:
    cheap, dear = trained(200, 5), trained(1000, 5)
    for policy in (cheap, dear):
        arrive(policy, 30, 50)
    now = 1.0
    cheap_due, dear_due = cheap.dispatch_at(now, now, 1, 1), dear.dispatch_at(now, now, 1, 1)
    assert cheap_due is not None and dear_due is not None
    assert dear_due - now > 3 * (cheap_due - now)


def test_patience_shrinks_as_the_batch_grows_and_stops_holding() -> None:
    policy = trained(350, 5)
    now = arrive(policy, 20, 50)
    waits = []
    for held in range(1, 20):
        due = policy.dispatch_at(now, now, held, held)
        waits.append(0.0 if due is None else due - now)
    assert all(x >= y for x, y in itertools.pairwise(waits))
    assert waits[0] > 0 and waits[-1] == 0.0
    # It stops near m = a / (2g + b*r) = 350 / 45 ~ 7.8 requests.
    assert waits.index(0.0) + 1 in (7, 8, 9)


def test_wait_is_capped_from_the_batch_opening() -> None:
    policy = AdaptiveWait(max_wait_us=100)
    rng = random.Random(3)
    for _ in range(100):
        rows = rng.randint(1, 32)
        policy.ran(rows, (2000 + rows) * US)
    now = arrive(policy, 10, 50)
    assert policy.dispatch_at(now, now, 1, 1) == pytest.approx(now + 100 * US)
    opened = now - 80 * US
    assert policy.dispatch_at(opened, now, 2, 2) == pytest.approx(opened + 100 * US)
    assert policy.current_wait_us() == pytest.approx(100)


def test_an_idle_spell_does_not_blind_the_arrival_rate_for_long() -> None:
    policy = trained(350, 5)
    now = arrive(policy, 20, 50)
    now += 30.0  # idle for 30 s
    policy.arrived(now, 1)
    assert policy.dispatch_at(now, now, 1, 1) is None
    for count in range(1, 60):  # noqa: B007 (read after the loop)
        now = arrive(policy, 20, 1, start=now)
        if policy.dispatch_at(now, now, 1, 1) is not None:
            break
    assert count < 40


def test_rows_per_request_scale_the_per_row_cost() -> None:
    policy = trained(350, 5)
    arrive(policy, 5, 100, rows=40)  # 40-row requests: b*r = 200 us of the 350 us patience
    assert policy.patience_s(1) == pytest.approx((350 - 5 * 40) * US, rel=0.01)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        AdaptiveWait(-1)
    with pytest.raises(ValueError):
        AdaptiveWait(margin=0.5)
    with pytest.raises(ValueError):
        AdaptiveWait(cost_weight=0)
