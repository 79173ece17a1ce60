"""The reference servers mly is measured against, each run by uvicorn in its own process.

- ``naive_app``: the obvious TensorFlow server, one ``serving_default`` call per request.
- ``exact_body_app``: the same, with a dict from raw request bytes to response bytes in
  front of TensorFlow: the dozen-line cache a user would write first.
- ``bare_app``: reads the body and answers fixed bytes: the ceiling of this HTTP stack.

They are written the way a competent first version would be (orjson, the concrete
function called directly, uvloop + httptools) so that "Nx naive" measures what mly
adds, not a strawman's mistakes. The model folder comes from ``BENCH_MODEL_DIR``; any
SavedModel whose inputs are ``[rows, 1]`` works. A body is one row (scalars) or a batch
(equal-length arrays, ``batch_size`` ignored); the answer has mly's shape, an object for
one row and a list of objects for a batch.

Start one with::

    uvicorn --app-dir bench apps:naive_app --factory --loop uvloop --http httptools
"""

from __future__ import annotations

import os
from typing import Any

MODEL_ENV, BODY_ENV = "BENCH_MODEL_DIR", "BENCH_BARE_BODY"
EVAL_PATH = "/v1/api/model/{model}/eval"
MODEL_ID_ENV = "BENCH_MODEL_ID"
#: entries of the exact-body cache; far above any benchmark's distinct bodies
EXACT_BODY_ENTRIES = 1_000_000


def _predictor() -> Any:
    """A function from a parsed JSON body to response bytes, calling TF once per body."""
    import numpy as np
    import orjson
    import tensorflow as tf

    fn = tf.saved_model.load(os.environ[MODEL_ENV]).signatures["serving_default"]
    _, specs = fn.structured_input_signature

    def predict(payload: dict[str, Any]) -> bytes:
        feeds = {}
        batch = False
        for name, spec in specs.items():
            value = payload[name]
            if isinstance(value, list):
                batch = True
                feeds[name] = tf.constant(np.asarray(value).reshape(-1, 1), dtype=spec.dtype)
            else:
                feeds[name] = tf.constant([[value]], dtype=spec.dtype)
        out = {name: tensor.numpy().reshape(-1) for name, tensor in fn(**feeds).items()}

        def cell(v: Any) -> Any:
            return v.decode() if isinstance(v, bytes) else v.item()

        if not batch:
            return orjson.dumps({"status": "ok", "data": {k: cell(v[0]) for k, v in out.items()}})
        rows = len(next(iter(out.values())))
        return orjson.dumps({"status": "ok", "data": [{k: cell(v[i]) for k, v in out.items()} for i in range(rows)]})

    warm: dict[str, Any] = {}
    for name, spec in specs.items():
        warm[name] = "" if spec.dtype == tf.string else 0
    predict(warm)  # trace once before serving, as mly's loader does
    return predict


def _routes(evaluate: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def health(request: Request) -> Response:
        return Response(b'{"ok":1}', media_type="application/json")

    path = EVAL_PATH.format(model=os.environ.get(MODEL_ID_ENV, "ctr"))
    return Starlette(routes=[Route(path, evaluate, methods=["POST"]), Route("/v1/api/health", health)])


def naive_app() -> Any:
    """One TF call per request in the threadpool; no cache, no batching."""
    import orjson
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response

    predict = _predictor()

    async def evaluate(request: Request) -> Response:
        payload = orjson.loads(await request.body())
        return Response(await run_in_threadpool(predict, payload), media_type="application/json")

    return _routes(evaluate)


def exact_body_app() -> Any:
    """``naive_app`` behind a dict from request bytes to response bytes.

    A hit never leaves the event loop; a miss costs what the naive app costs. Bounded by
    entry count (the benchmark's bodies fit many times over), no TTL, no normalisation:
    two bodies that differ in one byte, or in one row of a batch, are two misses.
    """
    import orjson
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response

    predict = _predictor()
    cache: dict[bytes, bytes] = {}

    async def evaluate(request: Request) -> Response:
        body = await request.body()
        answer = cache.get(body)
        if answer is None:
            answer = await run_in_threadpool(predict, orjson.loads(body))
            if len(cache) < EXACT_BODY_ENTRIES:
                cache[body] = answer
        return Response(answer, media_type="application/json")

    return _routes(evaluate)


def bare_app() -> Any:
    """The HTTP ceiling: same stack and route, reads the body, answers ``BENCH_BARE_BODY``."""
    from starlette.requests import Request
    from starlette.responses import Response

    answer = os.environ[BODY_ENV].encode()

    async def evaluate(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    return _routes(evaluate)
