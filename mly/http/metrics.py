"""``/v1/api/metric/...``: Go's gmetric JSON routes over the operations of every model.

Recorded operations come from ``ModelService.metrics``; the batcher and cache
operations are built at read time from the counters those layers keep anyway
(so the hot path pays for them once), in the order the Go server lists them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mly.http.responses import JSONResponse
from mly.metrics import Operation, Window
from mly.service.registry import ModelRegistry

__all__ = ["all_operations", "metric_routes"]

_DATASTORE_KEYS = ("error", "noKey", "collision", "cacheHit", "expired", "hasValue", "L2NoKey", "L1Copy",
                   "timeout", "down", "localHasValue", "localNoKey", "L1NoKey", "L1HasValue")


def _derived(name: str, description: str, keys: tuple[str, ...], count: int, values: dict[str, int], *,
             location: str, custom: Any = None, time_taken_us: int = 0, max_us: int = 0) -> Operation:
    op = Operation(name, description, keys, location=location, custom=lambda: custom)
    window = op.total
    window.count = count
    window.values = [int(values.get(key, 0)) for key in keys]
    window.time_taken, window.max = time_taken_us, max_us
    return op


def _handler_operation(model_id: str, perf: Operation) -> Operation:
    """Go's ``{id}HTTPHandler`` (error, canceled, deadlineExceeded) from ``{id}Perf``, which times
    the same requests: one record per request instead of two."""
    keys = ("error", "canceled", "deadlineExceeded")
    op = Operation(f"{model_id}HTTPHandler", f"{model_id} eval handler", keys, location=perf.location,
                   recent_buckets=len(perf.recent))

    def copy(src: Window, dst: Window) -> None:
        dst.minute, dst.count, dst.time_taken, dst.max, dst.min = src.minute, src.count, src.time_taken, src.max, src.min
        n = dict(zip(perf.keys, src.values))
        dst.values = [n["error"] + n["overloaded"], n["canceled"], n["deadlineExceeded"]]

    copy(perf.total, op.total)
    for src, dst in zip(perf.recent, op.recent):
        copy(src, dst)
    return op


def _batcher_operations(model_id: str, counters: Any, eval_op: Operation) -> list[Operation]:
    c = counters
    location = "mly/batching"
    return [
        _derived(f"{model_id}Semaphore", f"{model_id} evaluator slots", ("error", "canceled", "deadlineExceeded", "waiting"),
                 c.batches, {"deadlineExceeded": c.deadline_exceeded, "waiting": c.slot_waits},
                 location=location, custom={"Max": eval_op.peak_active} if eval_op.peak_active else None),
        _derived(f"{model_id}Dispatcher", f"{model_id} batch dispatches", ("timeout", "closing", "full", "instant"),
                 c.batches, {"timeout": c.timeout, "closing": c.closing, "full": c.full, "instant": c.instant + c.direct},
                 location=location, custom={"Elements": c.rows, "Batches": c.batches}),
        _derived(f"{model_id}BatcherQueue", f"{model_id} batch queue wait", (), c.requests, {}, location=location,
                 time_taken_us=int(c.queue_wait_total_s * 1e6), max_us=int(c.queue_wait_max_s * 1e6)),
    ]


def _datastore_operations(ds_id: str, counters: Any) -> list[Operation]:
    c = counters.as_dict()
    hits_memory, hits_l1, hits_l2 = c.get("hits_memory", 0), c.get("hits_l1", 0), c.get("hits_l2", 0)
    misses, negative = c.get("misses", 0), c.get("negative_hits", 0)
    lookups = hits_memory + hits_l1 + hits_l2 + misses + negative
    reads = {
        "error": c.get("errors", 0), "noKey": misses, "cacheHit": hits_memory + hits_l1 + hits_l2,
        "expired": c.get("stale", 0), "hasValue": hits_l1 + hits_l2, "L1Copy": hits_l2,
        "timeout": c.get("timeouts", 0), "down": c.get("breaker_open_skips", 0),
        "localHasValue": hits_memory, "localNoKey": lookups - hits_memory, "L1HasValue": hits_l1,
    }
    writes = c.get("writes", 0)
    return [
        _derived(ds_id, f"{ds_id} cache lookups (per row)", _DATASTORE_KEYS, lookups, reads, location="mly/cache"),
        _derived(f"{ds_id}CacheW", f"{ds_id} cache writes (per row)", ("error", "L1Write", "L2Write"),
                 writes + c.get("write_errors", 0), {"error": c.get("write_errors", 0), "L1Write": writes},
                 location="mly/cache"),
    ]


def all_operations(registry: ModelRegistry) -> list[Operation]:
    """Every operation in Go's order: per model, then per datastore."""
    out: list[Operation] = []
    for model_id, service in registry.services.items():
        m = service.metrics
        out += [m.perf, m.eval, m.reload, m.http_overhead, _handler_operation(model_id, m.perf)]
        generation = service.generation
        if generation is not None and generation.batcher is not None:
            out += _batcher_operations(model_id, generation.batcher.counters, m.eval)
        out += [m.meta_handler, m.dict_meta, m.cfg_meta]
    for ds_id, cache in registry.caches.items():
        out += _datastore_operations(ds_id, cache.counters)
    return out


def metric_routes(registry: ModelRegistry, prefix: str = "/v1/api/metric") -> list[Route]:
    def find(name: str) -> Operation | None:
        return next((op for op in all_operations(registry) if op.name == name), None)

    async def operations(request: Request) -> Response:
        return JSONResponse([op.to_json() for op in all_operations(registry)])

    async def operation(request: Request) -> Response:
        op = find(request.path_params["name"])
        return JSONResponse(op.to_json() if op is not None else None)

    async def recent(request: Request) -> Response:
        op = find(request.path_params["name"])
        return JSONResponse(op.current().to_json(op.keys, None) if op is not None else None)

    async def cumulative_metric(request: Request) -> Response:
        op = find(request.path_params["name"])
        return JSONResponse(op.total.metric(op.keys, request.path_params["metric"]) if op is not None else None)

    async def recent_metric(request: Request) -> Response:
        op = find(request.path_params["name"])
        return JSONResponse(op.current().metric(op.keys, request.path_params["metric"]) if op is not None else None)

    async def counters(request: Request) -> Response:
        return JSONResponse([])  # Go's simple counters belong to the stream log, which mly does not write yet

    async def counter(request: Request) -> Response:
        return JSONResponse(None)

    return [
        Route(f"{prefix}/operations", operations, methods=["GET"]),
        Route(f"{prefix}/operation/{{name}}", operation, methods=["GET"]),
        Route(f"{prefix}/operation/{{name}}/recent", recent, methods=["GET"]),
        Route(f"{prefix}/operation/{{name}}/cumulative/{{metric}}", cumulative_metric, methods=["GET"]),
        Route(f"{prefix}/operation/{{name}}/recent/{{metric}}", recent_metric, methods=["GET"]),
        Route(f"{prefix}/counters", counters, methods=["GET"]),
        Route(f"{prefix}/counter/{{name}}", counter, methods=["GET"]),
    ]
