"""Config -> BatchSettings: Go's rules and mly's two changes."""

from __future__ import annotations

from typing import Any

import pytest

from mly.batching.settings import DEFAULT_MAX_BATCH_SIZE, BatchSettings, settings_for
from mly.config import parse_config
from mly.config.schema import Config


def config(model: dict[str, Any] | None = None, **top: Any) -> Config:
    return parse_config({"Models": [{"ID": "m", "URL": "/m", **(model or {})}], **top})


def resolve(model: dict[str, Any] | None = None, *, pool_threads: int | None = None, **top: Any) -> BatchSettings:
    cfg = config(model, **top)
    return settings_for(cfg.models[0], cfg, pool_threads=pool_threads)


def test_no_batch_config_means_adaptive_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCHER_MAX_QUEUED_BATCHES", raising=False)
    s = resolve()
    assert s == BatchSettings(
        max_batch_size=DEFAULT_MAX_BATCH_SIZE, wait_us=500, adaptive=True, max_concurrency=0,
        max_queued_batches=16384, enabled=True,
    )
    assert resolve(pool_threads=4).max_concurrency == 4


def test_model_batch_wins_over_global_batching() -> None:
    s = resolve(
        {"Batch": {"MaxBatchSize": 32, "BatchWait": 200_000, "MaxEvaluatorConcurrency": 3, "MaxQueuedBatches": 7}},
        GlobalBatching={"MaxBatchSize": 99, "BatchWait": 9_000_000},
    )
    assert s == BatchSettings(max_batch_size=32, wait_us=200, adaptive=False, max_concurrency=3,
                              max_queued_batches=7, enabled=True)
    g = resolve(GlobalBatching={"MaxBatchSize": 99, "BatchWait": 9_000_000})
    assert (g.max_batch_size, g.wait_us, g.adaptive) == (99, 9000, False)


def test_go_defaults_for_zero_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_MAX_QUEUED_BATCHES", "64")
    s = resolve({"Batch": {"MaxBatchSize": -3}})
    assert (s.max_batch_size, s.wait_us, s.max_concurrency, s.max_queued_batches) == (0, 500, 0, 64)
    assert resolve({"Batch": {}}, pool_threads=2).max_concurrency == 2
    monkeypatch.setenv("DISPATCHER_MAX_QUEUED_BATCHES", "many")
    assert resolve({"Batch": {}}).max_queued_batches == 16384


def test_batch_wait_micros_overrides_and_rounds_up() -> None:
    assert resolve({"Batch": {"BatchWait": 900_000}, "BatchWaitMicros": 150}).wait_us == 150
    assert resolve({"BatchWaitMicros": 150}).wait_us == 150  # enables a plain batcher on its own
    assert resolve({"BatchWaitMicros": 150}).adaptive is False
    assert resolve({"Batch": {"BatchWait": 1500}}).wait_us == 2


def test_negative_batch_wait_really_disables_batching() -> None:
    s = resolve({"Batch": {"BatchWait": -1, "MaxEvaluatorConcurrency": 2, "MaxQueuedBatches": 5}})
    assert not s.enabled and s.max_concurrency == 2 and s.max_queued_batches == 5
    assert not resolve({"BatchWaitMicros": -1}).enabled
    assert not resolve(GlobalBatching={"BatchWait": -5}).enabled


def test_timeout_adjustments_switch_on_adaptive_wait() -> None:
    s = resolve({"Batch": {"BatchWait": 300_000, "TimeoutAdjustments": {}}})
    assert s.adaptive and s.wait_us == 300  # Max 0: the batch wait is the cap
    capped = resolve({"Batch": {"MaxEvaluatorConcurrency": 4,
                                "TimeoutAdjustments": {"Increment": 100_000, "Max": 10}}})
    assert capped.adaptive and capped.wait_us == 400  # Increment x min(Max, MaxEvaluatorConcurrency)


def test_settings_reject_impossible_values() -> None:
    with pytest.raises(ValueError):
        BatchSettings(wait_us=-1)
    with pytest.raises(ValueError):
        BatchSettings(max_queued_batches=0)
    with pytest.raises(ValueError):
        BatchSettings(max_concurrency=-1)
