"""What one model's batcher does, resolved once from the config.

``settings_for`` applies Go's rules, with two deliberate changes:

- ``BatchWait < 0`` really turns batching off (Go converts it to 0 and still
  batches with zero wait: a quirk of the Go batcher). Each request then runs alone,
  still bounded by ``MaxEvaluatorConcurrency`` and ``MaxQueuedBatches``.
- A model with neither ``Batch`` nor ``GlobalBatching`` gets ``DEFAULT_SETTINGS``:
  batching on, adaptive wait (Go: no batcher at all). The adaptive policy waits
  nothing until arrivals are dense enough to amortise the model's fixed cost,
  so at low load a request is dispatched at once exactly as without a batcher,
  while under load concurrent requests share one TensorFlow call instead of
  queueing behind each other's fixed costs.

Adaptive wait has no field of its own in Go's config, and the schema keeps Go's
fields, so it is switched on by the presence of ``TimeoutAdjustments``: Go's
"adapt the wait to load" knob (wait = Increment x active evaluators). The
adaptive rule replaces that formula; the wait cap is ``Increment x Max`` when
both are set (the longest wait Go's formula can reach; Max clamped to
``MaxEvaluatorConcurrency``), else the batch wait.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mly.config.schema import BatchConfig, Config, ModelConfig

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUED_BATCHES",
    "DEFAULT_SETTINGS",
    "DEFAULT_WAIT_US",
    "DISABLED",
    "BatchSettings",
    "max_queued_batches_default",
    "settings_for",
]

DEFAULT_WAIT_US = 500
"""Go's default ``BatchWait`` (500 µs), used when ``BatchWait`` is 0."""
DEFAULT_MAX_QUEUED_BATCHES = 16384
"""Go's default when ``MaxQueuedBatches`` <= 0 and ``DISPATCHER_MAX_QUEUED_BATCHES`` is unset."""
DEFAULT_MAX_BATCH_SIZE = 256
"""Rows per batch when no ``Batch`` config exists. Past ``a / b`` rows (fixed over
per-row cost) a call's fixed cost is already amortised, so bigger batches only add
latency and memory; 256 covers the ratio of typical CPU models."""
ENV_MAX_QUEUED_BATCHES = "DISPATCHER_MAX_QUEUED_BATCHES"


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """One batcher's knobs.

    ``max_batch_size``: rows that close a batch (soft: one request may overshoot);
    <= 0 unbounded. ``wait_us``: the fixed wait, or the adaptive wait's cap.
    ``max_concurrency``: batches running at once; 0 unbounded. ``max_queued_batches``:
    closed batches waiting for a slot before submits get 429. ``enabled`` false:
    every request runs alone (no merging), still bounded the same way.
    """

    max_batch_size: int = 0
    wait_us: int = DEFAULT_WAIT_US
    adaptive: bool = False
    max_concurrency: int = 0
    max_queued_batches: int = DEFAULT_MAX_QUEUED_BATCHES
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.wait_us < 0:
            raise ValueError(f"wait_us must be >= 0, got {self.wait_us}")
        if self.max_concurrency < 0:
            raise ValueError(f"max_concurrency must be >= 0, got {self.max_concurrency}")
        if self.max_queued_batches < 1:
            raise ValueError(f"max_queued_batches must be >= 1, got {self.max_queued_batches}")


DEFAULT_SETTINGS = BatchSettings(
    max_batch_size=DEFAULT_MAX_BATCH_SIZE, wait_us=DEFAULT_WAIT_US, adaptive=True
)
"""Used for a model with no ``Batch`` and no ``GlobalBatching`` (see the module docstring)."""
DISABLED = BatchSettings(enabled=False, wait_us=0)


def max_queued_batches_default() -> int:
    """``DISPATCHER_MAX_QUEUED_BATCHES`` or 16384; a bad or non-positive value falls back (Go)."""
    text = os.environ.get(ENV_MAX_QUEUED_BATCHES, "")
    try:
        value = int(text) if text else DEFAULT_MAX_QUEUED_BATCHES
    except ValueError:
        value = DEFAULT_MAX_QUEUED_BATCHES
    return value if value > 0 else DEFAULT_MAX_QUEUED_BATCHES


def settings_for(model: ModelConfig, config: Config, *, pool_threads: int | None = None) -> BatchSettings:
    """The batcher settings of ``model``: its ``Batch``, else ``GlobalBatching``, else the default.

    ``BatchWaitMicros`` (model level) overrides ``BatchWait``; a negative wait
    disables batching. ``pool_threads`` is the size of the inference pool the
    batcher runs in: when given, ``MaxEvaluatorConcurrency`` 0 ("unbounded")
    means that many, because more batches than threads cannot run at once
    anyway, and a batch waiting in the executor's hidden queue can neither
    take more rows, nor be shed, nor be dropped when its deadline passes.
    """
    batch: BatchConfig | None = model.batch if model.batch is not None else config.global_batching
    default_concurrency = pool_threads if pool_threads and pool_threads > 0 else 0
    if batch is None and model.batch_wait_micros == 0:
        return BatchSettings(
            max_batch_size=DEFAULT_SETTINGS.max_batch_size,
            wait_us=DEFAULT_SETTINGS.wait_us,
            adaptive=True,
            max_concurrency=default_concurrency,
            max_queued_batches=max_queued_batches_default(),
        )
    batch = batch or BatchConfig()
    wait_ns = model.batch_wait_micros * 1000 if model.batch_wait_micros != 0 else batch.batch_wait
    concurrency = batch.max_evaluator_concurrency if batch.max_evaluator_concurrency > 0 else default_concurrency
    queued = batch.max_queued_batches if batch.max_queued_batches > 0 else max_queued_batches_default()
    if wait_ns < 0:
        return BatchSettings(wait_us=0, max_concurrency=concurrency, max_queued_batches=queued, enabled=False)
    wait_us = -(-wait_ns // 1000) if wait_ns > 0 else DEFAULT_WAIT_US
    adjust = batch.timeout_adjustments
    if adjust is not None and adjust.increment > 0 and adjust.max > 0:
        # Go clamps Max to MaxEvaluatorConcurrency: Increment x Max is its longest wait.
        most_active = adjust.max
        if batch.max_evaluator_concurrency > 0:
            most_active = min(most_active, batch.max_evaluator_concurrency)
        wait_us = -(-adjust.increment * most_active // 1000)
    return BatchSettings(
        max_batch_size=max(0, batch.max_batch_size),
        wait_us=wait_us,
        adaptive=adjust is not None,
        max_concurrency=concurrency,
        max_queued_batches=queued,
    )
