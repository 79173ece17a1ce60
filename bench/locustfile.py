"""Locust scenarios for an mly or Go mly deployment: ``locust -f bench/locustfile.py --host URL``.

Rows come from the served model itself (``meta/config`` + ``meta/dictionary``, fetched once per
locust process when the test starts), with a share of out-of-vocabulary values, so the same file
works against any model of any mly or Go mly server. Pick scenarios by user class name on the
command line (``bench/README.md`` lists headless command lines):

- raw HTTP (``FastHttpUser``, one POST per task, the server is all that is measured):
  ``HotRowUser`` cycles a pool of hot rows, ``ColdRowUser`` sends fresh random rows,
  ``BatchUser`` sends batches drawn from the hot pool, ``MixUser`` sends a hot row with
  probability ``--mly-hit-rate`` and a fresh row otherwise;
- ``mly.client`` (``ClientHotUser``, ``ClientColdUser``, ``ClientBatchUser``, ``ClientMixUser``):
  the same traffic through one ``mly.client.Client`` per locust process, so the client's own
  cache is part of what is measured: a predict its cache tiers answer whole is a request of a
  few microseconds, reported as ``<class> cached``; ``<class> sent`` when the server was asked.

The hot pool is sent to the server (and through the shared client) once before users start,
outside the statistics, so "hot" means a cache hit from the first measured request on.
A response counts as a success only if it is HTTP 200 with JSON ``status == "ok"`` (and, for
a batch, one result per row); the client users count any exception of ``predict`` as a failure.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import os
import random
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # `locust -f bench/locustfile.py` does not put bench/ on the path
    sys.path.insert(0, str(BENCH))

import gevent
import orjson
from corpus import Corpus, Row, batch_body, fields_from_meta, hot_batches, single_body
from locust import FastHttpUser, User, events, task
from locust.env import Environment
from locust.exception import StopTest
from locust.runners import MasterRunner

log = logging.getLogger("mly.locust")
logging.getLogger("httpx").setLevel(logging.WARNING)  # the client's httpx logs every request at INFO

_JSON = {"Content-Type": "application/json"}
_BATCH_BODIES = 256
"""Distinct hot batch bodies per process: enough that batches do not repeat in lockstep."""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    """Custom options; each one can also come from its ``LOCUST_MLY_*`` variable (headless, CI)."""
    parser.add_argument("--mly-model", env_var="LOCUST_MLY_MODEL", default="ctr", help="model ID (default ctr)")
    parser.add_argument("--mly-oov", env_var="LOCUST_MLY_OOV", type=float, default=0.05,
                        help="share of out-of-vocabulary categorical values (default 0.05)")
    parser.add_argument("--mly-hot-rows", env_var="LOCUST_MLY_HOT_ROWS", type=int, default=1000,
                        help="rows in the hot keyspace (default 1000)")
    parser.add_argument("--mly-batch-size", env_var="LOCUST_MLY_BATCH_SIZE", type=int, default=32,
                        help="rows per batch request (default 32)")
    parser.add_argument("--mly-hit-rate", env_var="LOCUST_MLY_HIT_RATE", type=float, default=0.9,
                        help="share of hot rows in the Mix users' traffic (default 0.9)")
    parser.add_argument("--mly-seed", env_var="LOCUST_MLY_SEED", type=int, default=1,
                        help="seed of the hot pool (cold rows also differ per process)")
    parser.add_argument("--mly-no-warm", env_var="LOCUST_MLY_NO_WARM", action="store_true", default=False,
                        help="do not send the hot pool before the users start")
    parser.add_argument("--mly-wait-ms", env_var="LOCUST_MLY_WAIT_MS", type=float, default=0.0,
                        help="pause of each user between requests (default 0: closed loop)")
    parser.add_argument("--mly-client-scope", env_var="LOCUST_MLY_CLIENT_SCOPE", default="all",
                        choices=["all", "local", "none"],
                        help="cache tiers the mly.client users read (all: those of the model's datastore)")


@dataclass(frozen=True)
class Settings:
    model: str = "ctr"
    oov: float = 0.05
    hot_rows: int = 1000
    batch_size: int = 32
    hit_rate: float = 0.9
    seed: int = 1
    warm: bool = True
    wait_s: float = 0.0
    client_scope: str = "all"

    @classmethod
    def of(cls, environment: Environment) -> Settings:
        opts = environment.parsed_options
        if opts is None:  # locust used as a library: the defaults
            return cls()
        settings = cls(opts.mly_model, opts.mly_oov, opts.mly_hot_rows, opts.mly_batch_size, opts.mly_hit_rate,
                       opts.mly_seed, not opts.mly_no_warm, opts.mly_wait_ms / 1000.0, opts.mly_client_scope)
        settings.check()
        return settings

    def check(self) -> None:
        if not 0.0 <= self.hit_rate <= 1.0:
            raise ValueError(f"--mly-hit-rate must be in [0, 1], got {self.hit_rate}")
        if not 0.0 <= self.oov <= 1.0:
            raise ValueError(f"--mly-oov must be in [0, 1], got {self.oov}")
        if not 1 <= self.batch_size <= self.hot_rows:
            raise ValueError(f"--mly-batch-size must be in [1, --mly-hot-rows={self.hot_rows}], got {self.batch_size}")
        if self.wait_s < 0:
            raise ValueError("--mly-wait-ms must be >= 0")


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        body: bytes = answer.read()
    # mly and Go mly gzip the dictionary whatever the request asks (Content-Encoding: gzip),
    # and urllib does not decode it; the magic bytes also catch a proxy that dropped the header.
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def _post(url: str, body: bytes) -> Any:
    request = urllib.request.Request(url, data=body, headers=_JSON, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return orjson.loads(answer.read())


class Workload:
    """What one locust process sends: the model's fields, the hot pool, a cold row source."""

    def __init__(self, host: str, settings: Settings) -> None:
        self.host = host.rstrip("/")
        self.settings = settings
        self.eval_path = f"/v1/api/model/{settings.model}/eval"
        meta = f"{self.host}/v1/api/model/{settings.model}/meta"
        self.fields = fields_from_meta(orjson.loads(_get(f"{meta}/config")), orjson.loads(_get(f"{meta}/dictionary")))
        self.hot = Corpus(self.fields, oov=settings.oov, seed=settings.seed).rows(settings.hot_rows)
        self.hot_bodies = [single_body(row) for row in self.hot]
        self.hot_batch_bodies = hot_batches(self.hot, _BATCH_BODIES, settings.batch_size, seed=settings.seed + 1)
        # Cold rows differ per process, so two workers do not warm each other's "cold" keys.
        self._cold = Corpus(self.fields, oov=settings.oov, seed=settings.seed * 1_000_003 + os.getpid())
        self.rng = random.Random(settings.seed + os.getpid())

    def cold_row(self) -> Row:
        return self._cold.row()

    def hot_sample(self) -> list[Row]:
        return self.rng.sample(self.hot, self.settings.batch_size)

    def warm_server(self) -> None:
        """Every hot row once, in batches; the answers are checked but not counted."""
        size = self.settings.batch_size
        for start in range(0, len(self.hot), size):
            answer = _post(self.host + self.eval_path, batch_body(self.hot[start:start + size]))
            if not isinstance(answer, dict) or answer.get("status") != "ok":
                raise RuntimeError(f"warming the hot pool: the server answered {str(answer)[:300]}")


_LOCK = threading.Lock()  # gevent-aware: locust monkeypatches threading before this module loads
_WORKLOADS: dict[tuple[str, Settings], Workload] = {}
_CLIENTS: dict[tuple[str, Settings], Any] = {}


def workload(environment: Environment) -> Workload:
    """This process's workload for the current host, built (and warmed) on first use."""
    host = environment.host
    if not host:
        raise ValueError("no --host: give the mly server's base URL, e.g. --host http://127.0.0.1:8080")
    settings = Settings.of(environment)
    with _LOCK:
        built = _WORKLOADS.get((host, settings))
        if built is None:
            built = Workload(host, settings)
            if settings.warm:
                built.warm_server()
            _WORKLOADS[(host, settings)] = built
            log.info("model %s at %s: %d inputs, %d hot rows", settings.model, host, len(built.fields), len(built.hot))
        return built


def shared_client(environment: Environment) -> Any:
    """One ``mly.client.Client`` per locust process, as an application process would hold one."""
    load = workload(environment)
    key = (load.host, load.settings)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            from mly.client import CacheScope, Client

            scope = {"all": CacheScope.ALL, "local": CacheScope.LOCAL, "none": CacheScope.NONE}
            client = Client(load.settings.model, hosts=[load.host], cache_scope=scope[load.settings.client_scope])
            if load.settings.warm:
                size = load.settings.batch_size
                for start in range(0, len(load.hot), size):
                    client.predict(load.hot[start:start + size])
            _CLIENTS[key] = client
        return client


@events.test_start.add_listener
def _prepare(environment: Environment, **_: Any) -> None:
    """Fetch the model's metadata and warm up before the first user starts, so a wrong
    ``--host`` or model ID stops the run at once instead of failing every request."""
    if isinstance(environment.runner, MasterRunner):
        return
    try:
        workload(environment)
        if any(issubclass(cls, ClientUser) for cls in environment.user_classes):
            shared_client(environment)
    except Exception as exc:
        environment.process_exit_code = 1
        raise StopTest(f"cannot prepare the load test against {environment.host}: {type(exc).__name__}: {exc}") from None


@events.quitting.add_listener
def _close_clients(**_: Any) -> None:
    with _LOCK:
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()


def _wait(user: Any) -> float:
    return float(user.load.settings.wait_s)


# ---------------------------------------------------------------------------- raw HTTP


class _HttpEval(FastHttpUser):
    """One eval POST per task, checked: HTTP 200, ``status == "ok"``, one result per row."""

    abstract = True
    wait_time = _wait

    def on_start(self) -> None:
        self.load = workload(self.environment)
        self.turn = itertools.count(random.randrange(len(self.load.hot)))

    def post(self, body: bytes, name: str, rows: int = 0) -> None:
        with self.client.post(self.load.eval_path, data=body, headers=_JSON, name=name,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                answer = orjson.loads(response.content or b"")
            except orjson.JSONDecodeError:
                response.failure(f"not JSON: {(response.text or '')[:200]}")
                return
            if not isinstance(answer, dict) or answer.get("status") != "ok":
                response.failure(f"status is not ok: {str(answer)[:200]}")
            elif rows and len(answer.get("data") or ()) != rows:
                response.failure(f"{rows} rows sent, {len(answer.get('data') or ())} results")

    def hot_body(self) -> bytes:
        bodies = self.load.hot_bodies
        return bodies[next(self.turn) % len(bodies)]


class HotRowUser(_HttpEval):
    """One row per request, cycling the hot pool: the server's cache-hit path."""

    @task
    def hot_row(self) -> None:
        self.post(self.hot_body(), "HotRowUser")


class ColdRowUser(_HttpEval):
    """One fresh random row per request: (almost) all misses, so the model runs for each."""

    @task
    def cold_row(self) -> None:
        self.post(single_body(self.load.cold_row()), "ColdRowUser")


class BatchUser(_HttpEval):
    """``--mly-batch-size`` rows per request, all from the hot pool."""

    @task
    def hot_batch(self) -> None:
        bodies = self.load.hot_batch_bodies
        self.post(bodies[next(self.turn) % len(bodies)], "BatchUser", rows=self.load.settings.batch_size)


class MixUser(_HttpEval):
    """A hot row with probability ``--mly-hit-rate``, else a fresh one (reported apart)."""

    @task
    def mixed_row(self) -> None:
        if random.random() < self.load.settings.hit_rate:
            self.post(self.hot_body(), "MixUser hot")
        else:
            self.post(single_body(self.load.cold_row()), "MixUser cold")


# ---------------------------------------------------------------------------- mly.client


class ClientUser(User):
    """Predicts through the process's shared ``mly.client.Client``; each call is reported to
    locust as ``<class> cached`` (every row answered by the client's cache tiers, no request)
    or ``<class> sent`` (the server was asked for some rows)."""

    abstract = True
    wait_time = _wait

    def on_start(self) -> None:
        self.load = workload(self.environment)
        self.client = shared_client(self.environment)
        self.turn = itertools.count(random.randrange(len(self.load.hot)))

    def predict(self, inputs: Row | list[Row]) -> None:
        name = type(self).__name__
        started = time.perf_counter()
        try:
            response = self.client.predict(inputs)
        except Exception as exc:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            events.request.fire(request_type="mly.client", name=f"{name} error", response_time=elapsed_ms,
                                response_length=0, exception=exc, context={})
            return
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        where = "cached" if response.status == "cached" else "sent"
        rows = len(inputs) if isinstance(inputs, list) else 0
        exception = None
        if response.status not in ("ok", "cached"):
            exception = RuntimeError(f"status {response.status!r}")
        elif rows and len(response.data) != rows:
            exception = RuntimeError(f"{rows} rows asked, {len(response.data)} results")
        # The size of the prediction handed to the caller (a local hit sends nothing).
        events.request.fire(request_type="mly.client", name=f"{name} {where}", response_time=elapsed_ms,
                            response_length=len(orjson.dumps(response.data)), exception=exception, context={})
        if where == "cached":
            # A predict that did no I/O never let gevent poll for it; without this, the users of
            # this process that wait for a round trip would wait for many local hits as well.
            gevent.idle()

    def hot_row(self) -> Row:
        return self.load.hot[next(self.turn) % len(self.load.hot)]


class ClientHotUser(ClientUser):
    """The hot pool through the client: after the warm-up, local hits only."""

    @task
    def hot_row_task(self) -> None:
        self.predict(self.hot_row())


class ClientColdUser(ClientUser):
    """Fresh rows through the client: local miss, then a round trip to a server miss."""

    @task
    def cold_row_task(self) -> None:
        self.predict(self.load.cold_row())


class ClientBatchUser(ClientUser):
    """``--mly-batch-size`` hot rows per predict: the client's batch merge of local hits."""

    @task
    def hot_batch_task(self) -> None:
        self.predict(self.load.hot_sample())


class ClientMixUser(ClientUser):
    """A hot row with probability ``--mly-hit-rate``, else a fresh one."""

    @task
    def mixed_row_task(self) -> None:
        self.predict(self.hot_row() if random.random() < self.load.settings.hit_rate else self.load.cold_row())
