"""``/v1/prometheus`` and ``/metrics``: Prometheus text exposition via ``prometheus_client``.

Nothing on the request path talks to ``prometheus_client``: the layers keep their
plain counters (``ModelMetrics``, the batcher's and caches' counters) and a
collector turns them into metric families when scraped. Under ``--workers N``
each worker copies its families into ``prometheus_client``'s multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, set by ``mly-fast serve``) every second and right
before it answers a scrape, and the scrape sums every worker's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mly.http.h1limits import COUNTERS
from mly.metrics.histogram import Histogram as LocalHistogram
from mly.service.registry import ModelRegistry

__all__ = ["MULTIPROC_ENV", "MlyCollector", "PrometheusExporter"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SYNC_INTERVAL_S = 1.0
log = logging.getLogger("mly.metrics")
#: Batch sizes are counted per power of two (1, 2, 4, ...); these are the ``le`` bounds exported.
_BATCH_ROW_BOUNDS = tuple(1 << i for i in range(17))
#: How the workers' values of a gauge combine (default: summed over live workers).
_GAUGE_MODES: dict[str, Any] = {"mly_model_dict_hash": "livemax", "mly_model_healthy": "livemin", "mly_cache_breaker_open": "livemax"}


def _histogram(family: HistogramMetricFamily, labels: list[str], h: LocalHistogram) -> None:
    family.add_metric(labels, [(str(le) if le != float("inf") else "+Inf", n) for le, n in h.cumulative()], h.sum)


class MlyCollector:
    """Reads the server's counters at scrape time."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._models()
        yield from self._caches()
        yield self._connections()

    def _connections(self) -> Metric:
        ended = CounterMetricFamily("mly_http_connections_ended",
                                    "HTTP/1.1 connections closed by a limit: refused (MaxConnections), "
                                    "read_timeout (ReadTimeoutMs), header_too_large (MaxHeaderBytes)",
                                    labels=["reason"])
        for reason, n in COUNTERS.as_dict().items():
            ended.add_metric([reason], n)
        return ended

    def _models(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily("mly_request_duration_seconds", "Request latency by model and route",
                                        labels=["model", "route"])
        requests = CounterMetricFamily("mly_requests", "Requests by model, route and outcome",
                                       labels=["model", "route", "outcome"])
        tf_time = HistogramMetricFamily("mly_tf_call_duration_seconds", "Time of one TensorFlow call",
                                        labels=["model"])
        tf_errors = CounterMetricFamily("mly_tf_call_errors", "Failed TensorFlow calls", labels=["model"])
        batch_rows = HistogramMetricFamily("mly_batch_rows", "Rows per dispatched batch", labels=["model"])
        queue_wait = SummaryMetricFamily("mly_batch_queue_wait_seconds", "Time from submit to dispatch",
                                         labels=["model"])
        reloads = CounterMetricFamily("mly_model_reloads", "Model reloads by result", labels=["model", "result"])
        dict_hash = GaugeMetricFamily("mly_model_dict_hash", "Dictionary hash of the loaded version (as a float)",
                                      labels=["model"])
        healthy = GaugeMetricFamily("mly_model_healthy", "1 when the last load or reload succeeded",
                                    labels=["model"])
        idletime = HistogramMetricFamily("mly_model_idletime", "Nanoseconds since the previous eval request",
                                         labels=["model"])
        for model_id, service in self.registry.services.items():
            m = service.metrics
            for route, op in (("eval", m.perf), ("meta/config", m.cfg_meta), ("meta/dictionary", m.dict_meta)):
                if op.latency is not None:
                    _histogram(latency, [model_id, route], op.latency)
                if route == "eval":
                    for key, n in zip(op.keys, op.total.values):
                        if n:
                            requests.add_metric([model_id, route, key], n)
                else:
                    requests.add_metric([model_id, route, "ok"], op.total.count)
            if m.eval.latency is not None:
                _histogram(tf_time, [model_id], m.eval.latency)
            tf_errors.add_metric([model_id], m.eval.total.values[0])
            generation = service.generation
            batcher = generation.batcher if generation is not None else None
            if batcher is not None:
                c = batcher.counters
                buckets, running = [], 0
                for bound in _BATCH_ROW_BOUNDS:  # fixed bounds: the same series from the first scrape on
                    running += c.batch_rows_histogram.get(bound, 0)
                    buckets.append((str(float(bound)), running))
                buckets.append(("+Inf", sum(c.batch_rows_histogram.values())))
                batch_rows.add_metric([model_id], buckets, float(c.rows))
                queue_wait.add_metric([model_id], c.requests, c.queue_wait_total_s)
            reloads.add_metric([model_id, "ok"], service.reloads)
            reloads.add_metric([model_id, "error"], service.reload_failures)
            if generation is not None:
                dict_hash.add_metric([model_id], float(generation.dict_hash))
            healthy.add_metric([model_id], float(service.healthy))
            _histogram(idletime, [model_id], m.idletime)
        yield from (latency, requests, tf_time, tf_errors, batch_rows, queue_wait, reloads, dict_hash, healthy,
                    idletime)

    def _caches(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily("mly_cache_lookups", "Per-row cache lookups by tier and outcome",
                                      labels=["datastore", "tier", "outcome"])
        store_errors = CounterMetricFamily("mly_cache_store_failures", "External store calls that failed",
                                           labels=["datastore", "kind"])
        writes = CounterMetricFamily("mly_cache_writes", "Rows written behind to external stores",
                                     labels=["datastore", "result"])
        depth = GaugeMetricFamily("mly_cache_write_queue_depth", "Rows waiting to be written", labels=["datastore"])
        breaker = GaugeMetricFamily("mly_cache_breaker_open", "1 while a store's circuit breaker is not closed",
                                    labels=["datastore", "tier"])
        for ds_id, cache in self.registry.caches.items():
            c = cache.counters.as_dict()
            for tier, outcome, key in (("memory", "hit", "hits_memory"), ("l1", "hit", "hits_l1"),
                                       ("l2", "hit", "hits_l2"), ("memory", "known_missing", "negative_hits"),
                                       ("any", "miss", "misses"), ("external", "stale", "stale")):
                lookups.add_metric([ds_id, tier, outcome], c.get(key, 0))
            for kind, key in (("error", "errors"), ("timeout", "timeouts"), ("breaker_open", "breaker_open_skips")):
                store_errors.add_metric([ds_id, kind], c.get(key, 0))
            for result, key in (("written", "writes"), ("error", "write_errors"), ("dropped", "write_dropped")):
                writes.add_metric([ds_id, result], c.get(key, 0))
            depth.add_metric([ds_id], c.get("write_queue_depth", 0))
            for tier_name in ("l1", "l2"):
                breaker_of_tier = getattr(getattr(cache, tier_name, None), "breaker", None)
                if breaker_of_tier is not None:
                    state = str(getattr(breaker_of_tier.state, "value", breaker_of_tier.state))
                    breaker.add_metric([ds_id, tier_name], float(state != "closed"))
        yield from (lookups, store_errors, writes, depth, breaker)


class _MultiProcessMirror:
    """Copies this worker's families into ``prometheus_client`` metrics backed by the
    multiprocess files, as deltas for counters and histograms and values for gauges."""

    def __init__(self, collector: MlyCollector) -> None:
        self.collector = collector
        self.metrics: dict[str, Any] = {}
        self.last: dict[tuple[str, tuple[str, ...], str], float] = {}

    def _metric(self, family: Metric, labelnames: list[str], buckets: list[float] | None) -> Any:
        metric = self.metrics.get(family.name)
        if metric is not None:
            return metric
        registry = CollectorRegistry()  # values live in the files; this registry is never scraped
        if family.type == "counter":
            metric = Counter(family.name, family.documentation, labelnames, registry=registry)
        elif family.type == "gauge":
            metric = Gauge(family.name, family.documentation, labelnames, registry=registry,
                           multiprocess_mode=_GAUGE_MODES.get(family.name, "livesum"))
        elif family.type == "histogram":
            metric = Histogram(family.name, family.documentation, labelnames, registry=registry,
                               buckets=buckets or [float("inf")])
        else:  # summary: count and sum only (no quantiles), the names a single process exports
            metric = Summary(family.name, family.documentation, labelnames, registry=registry)
        self.metrics[family.name] = metric
        return metric

    def _delta(self, key: tuple[str, tuple[str, ...], str], value: float) -> float:
        delta = value - self.last.get(key, 0.0)
        self.last[key] = value
        return max(delta, 0.0)  # a reload starts the batcher's counters again: never go backwards

    def sync(self) -> None:
        for family in self.collector.collect():
            by_labels: dict[tuple[str, ...], dict[str, Any]] = {}
            labelnames: list[str] = []
            for sample in family.samples:
                labels = {k: v for k, v in sample.labels.items() if k not in ("le", "quantile")}
                labelnames = list(labels)
                by_labels.setdefault(tuple(labels.values()), {})[sample.name + sample.labels.get("le", "")] = sample
            for values, samples in by_labels.items():
                self._sync_one(family, labelnames, values, samples)

    def _sync_one(self, family: Metric, labelnames: list[str], values: tuple[str, ...], samples: dict[str, Any]) -> None:
        name = family.name
        if family.type == "counter":
            sample = samples[f"{name}_total"]
            metric = self._metric(family, labelnames, None)
            child = metric.labels(*values) if labelnames else metric
            child.inc(self._delta((name, values, ""), sample.value))
        elif family.type == "gauge":
            metric = self._metric(family, labelnames, None)
            (metric.labels(*values) if labelnames else metric).set(samples[name].value)
        elif family.type == "histogram":
            bounds = sorted(float(s.labels["le"]) for s in samples.values() if "le" in s.labels)
            metric = self._metric(family, labelnames, [b for b in bounds if b != float("inf")])
            child = metric.labels(*values) if labelnames else metric
            previous = 0.0
            for i, bound in enumerate(bounds):
                text = "+Inf" if bound == float("inf") else str(bound)
                cumulative = samples[f"{name}_bucket{text}"].value
                delta = self._delta((name, values, text), cumulative - previous)
                previous = cumulative
                if i < len(child._buckets):
                    child._buckets[i].inc(delta)  # per-bucket counts: what observe() would have added
            child._sum.inc(self._delta((name, values, "sum"), samples[f"{name}_sum"].value))
        elif family.type == "summary":
            metric = self._metric(family, labelnames, None)
            child = metric.labels(*values) if labelnames else metric
            child._sum.inc(self._delta((name, values, "sum"), samples[f"{name}_sum"].value))
            child._count.inc(self._delta((name, values, "count"), samples[f"{name}_count"].value))


class PrometheusExporter:
    """The scrape endpoint and, under ``--workers``, the per-worker sync task."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.collector = MlyCollector(registry)
        self.multiproc_dir = os.environ.get(MULTIPROC_ENV) or None
        self.scrape_registry = CollectorRegistry()
        self.mirror: _MultiProcessMirror | None = None
        if self.multiproc_dir:
            self.mirror = _MultiProcessMirror(self.collector)
            MultiProcessCollector(self.scrape_registry, path=self.multiproc_dir)
        else:
            self.scrape_registry.register(self.collector)  # type: ignore[arg-type]

    async def endpoint(self, request: Request) -> Response:
        if self.mirror is not None:
            self.mirror.sync()
        return Response(generate_latest(self.scrape_registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [Route("/v1/prometheus", self.endpoint, methods=["GET"]),
                Route("/metrics", self.endpoint, methods=["GET"])]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Under ``--workers``: copy this worker's values to the shared files every second."""
        if self.mirror is None:
            yield
            return

        async def loop() -> None:
            while True:
                await asyncio.sleep(SYNC_INTERVAL_S)
                try:
                    self.mirror.sync()  # type: ignore[union-attr]
                except Exception:  # never let the copy stop: the next second tries again
                    log.exception("copying metrics for the other workers failed")

        task = asyncio.create_task(loop(), name="mly-prometheus-sync")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.mirror.sync()
            mark_process_dead(os.getpid(), self.multiproc_dir)  # its live gauges leave the sums
