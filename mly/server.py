"""Run the server: load every model first, then serve on uvicorn + uvloop + httptools
(HTTP/1.1) and ``h2`` (HTTP/2, see ``mly.http.protocol``), optionally over TLS.

Models load before the socket opens, so a bad config or model stops the start
with its reason instead of serving 503s.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import importlib
import logging
import os
import shutil
import signal
import socket
import ssl
import tempfile
from collections.abc import Sequence
from typing import Any

from mly.config.load import load_config
from mly.config.schema import Config
from mly.errors import ConfigError, MlyError

__all__ = ["build_app", "check_tls", "create_app_from_env", "import_modules", "run", "uvicorn_options",
           "with_access_log"]

CONFIG_ENV = "MLY_CONFIG"
#: How ``run`` hands ``--access-log``, ``--log-format`` and ``--log-level`` to ``--workers`` processes.
ACCESS_LOG_ENV = "MLY_ACCESS_LOG"
LOG_FORMAT_ENV = "MLY_LOG_FORMAT"
LOG_LEVEL_ENV = "MLY_LOG_LEVEL"
#: How ``run`` hands the ``--import`` modules to ``--workers`` processes (comma-separated).
IMPORTS_ENV = "MLY_WORKER_IMPORTS"
#: prometheus_client's multiprocess directory (read when prometheus_client is first imported).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("mly.server")


def build_app(config: Config):  # type: ignore[no-untyped-def]
    """A ready Starlette app with every model loaded (raises ``ModelLoadError``)."""
    from mly.config.unsupported import unsupported_settings
    from mly.logs.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # before anything imports TensorFlow: no CUDA-probe noise on CPU
    from mly.http.app import create_app
    from mly.model.runtime import configure_tensorflow
    from mly.service.registry import ModelRegistry

    for warning in unsupported_settings(config):
        log.warning("%s", warning)
    configure_tensorflow(config.endpoint)
    registry = ModelRegistry(config, inference_threads=config.endpoint.inference_threads or None)
    try:
        registry.load_all()
    except BaseException:
        registry.close()
        raise
    freeze_heap()
    return create_app(registry)


YOUNG_GC_THRESHOLD = 50_000
"""New container objects between two collections of the youngest generation (Python's default: 700)."""


def freeze_heap() -> None:
    """Move everything alive now (TensorFlow's object graph above all) out of the GC's sight.

    A loaded model is hundreds of thousands of tracked objects; every full
    collection walked them all and stalled the event loop for ~180 ms, which
    was the whole p99 under load. Frozen objects are still freed by reference
    counting; a reload unfreezes, collects and freezes again (``ModelService``).

    The youngest generation is also collected less often. With Python's default
    (a collection whenever 700 more container objects were made than freed) the
    server still ran one every ~80 cold requests, one of the middle generation
    every ~800 and a full one every few seconds, each walking the objects of
    every request in flight: 2.7% of its CPU (perf), with nothing to free, since
    a request's objects are freed by reference counting. At ``YOUNG_GC_THRESHOLD``
    a run of 33,000 requests triggers no collection at all.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)


def create_app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory for ``--workers N``: each worker process loads the models itself.

    A worker is a fresh (spawned) interpreter, so it imports the ``--import``
    modules again, or the transformers they register would be unknown there. A
    failure here must not reach uvicorn: a worker that exits any other way than
    with status 3 is replaced, and one that can never start would be started
    again forever. The worker reports the reason to the supervisor instead.
    """
    try:
        if LOG_FORMAT_ENV in os.environ:  # a spawned worker starts with no logging set up
            from mly.logs.format import configure_logging

            configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"), os.environ[LOG_FORMAT_ENV])
        import_modules(worker_imports())
        config = load_config(os.environ[CONFIG_ENV])
        if os.environ.get(ACCESS_LOG_ENV) == "1":
            config = with_access_log(config)
        return build_app(config)
    except Exception as exc:
        if isinstance(exc, MlyError):
            reason = str(exc)
        else:  # a bug rather than a bad config: keep the traceback in the log
            log.exception("worker %d could not start", os.getpid())
            reason = f"a worker could not start: {type(exc).__name__}: {exc}"
        from uvicorn.config import STARTUP_FAILURE

        from mly.service.selftest import report_startup_failure

        report_startup_failure(reason)
        raise SystemExit(STARTUP_FAILURE) from None


def import_modules(modules: Sequence[str]) -> None:
    """Import the ``--import`` modules (they register transformers as a side effect)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError("", f"--import {name}: {exc}") from exc


def worker_imports() -> list[str]:
    """The ``--import`` modules ``run`` handed to the worker processes."""
    return [name for name in os.environ.get(IMPORTS_ENV, "").split(",") if name]


def with_access_log(config: Config) -> Config:
    """``config`` with ``Endpoint.AccessLog`` on (what ``--access-log`` does)."""
    return dataclasses.replace(config, endpoint=dataclasses.replace(config.endpoint, access_log=True))


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)


class StartupError(MlyError):
    """The server was built but did not start (a model failed its self-test, a worker could not start)."""


def _raise_startup_error(error_file: str, exit_codes: Sequence[int | None]) -> None:
    """A worker that could not start wrote why and stopped the supervisor. One that stopped it
    without a reason (uvicorn's own start-up failure, status 3) still fails the start: without
    this the server would exit 0 as if stopped on purpose."""
    from uvicorn.config import STARTUP_FAILURE

    if os.path.exists(error_file):
        with open(error_file, encoding="utf-8") as f:
            raise StartupError(f.read())
    if STARTUP_FAILURE in exit_codes:
        raise StartupError("a worker process could not start (its log says why)")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket before the (slow) model load, so a port that is
    taken stops the start within a second with that reason and nothing else."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("Endpoint.Port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)  # worker processes serve the same socket
    return sock


def check_tls(config: Config) -> None:
    """Load ``TLS.CertFile``/``KeyFile`` once before the models, so a bad pair is one
    message naming the field and exit 3 rather than a failure after a long load."""
    if not config.tls.cert_file:
        return
    for key, path in (("CertFile", config.tls.cert_file), ("KeyFile", config.tls.key_file)):
        if not os.path.isfile(path):
            raise ConfigError(f"TLS.{key}", f"no such file: {path}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(config.tls.cert_file, config.tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("TLS.CertFile", f"cannot load the certificate and key: {exc}") from None


def uvicorn_options(config: Config, *, http2: bool | None = None) -> dict[str, Any]:
    """The ``MlyUvicornConfig`` keywords every server shares: the connection protocol, timeouts, TLS."""
    from mly.http.protocol import h1_limits, h2_settings, protocol_class

    settings = h2_settings(config.endpoint, enabled=http2)
    options: dict[str, Any] = dict(
        loop="uvloop",
        http=protocol_class(settings, h1_limits(config.endpoint)),
        timeout_keep_alive=config.endpoint.idle_timeout_s,
        # On SIGTERM/SIGINT: stop accepting, let requests in flight finish (none outlives its
        # deadline), then the lifespan flushes the write-behind queues (bounded) and stops.
        timeout_graceful_shutdown=config.endpoint.deadline_ms / 1000 + 1,
        access_log=False,
        # Forwarded headers name the client only when the config trusts the peer that sends them:
        # uvicorn's default trusts 127.0.0.1, which would let anyone on the host pass AllowedSubnet.
        proxy_headers=bool(config.endpoint.forwarded_allow_ips),
        forwarded_allow_ips=list(config.endpoint.forwarded_allow_ips) or None,
        alpn=("h2", "http/1.1") if settings.enabled else ("http/1.1",),
    )
    if config.tls.cert_file:
        options.update(ssl_certfile=config.tls.cert_file, ssl_keyfile=config.tls.key_file)
    return options


def http2_description(options: dict[str, Any]) -> str:
    """What serves HTTP/2 under ``options`` (``uvicorn_options``), for the start-up log."""
    http = options["http"]
    if "h2" not in options["alpn"] or not isinstance(http, functools.partial):
        return "off"
    engine = http.keywords.get("h2_engine", "h2")
    return f"{engine} engine" + ("" if engine == "nghttp2" else " (pure Python)")


def run(config_path: str, *, host: str = "0.0.0.0", port: int | None = None, workers: int = 1,
        log_level: str = "info", http2: bool | None = None, access_log: bool = False,
        log_format: str = "text", imports: Sequence[str] = ()) -> None:
    """Serve ``config_path``; ``http2`` overrides ``Endpoint.HTTP2`` (``None`` keeps it),
    ``access_log`` turns the access log on whatever ``Endpoint.AccessLog`` says,
    ``log_format="json"`` makes uvicorn's lines JSON too (they go through the root logger)
    and ``imports`` are the ``--import`` modules, which the caller has imported already
    (worker processes import them again)."""
    import uvicorn

    from mly.http.protocol import MlyUvicornConfig

    config = load_config(config_path)
    if access_log:
        config = with_access_log(config)
    sock = bind_socket(host, port if port is not None else config.endpoint.port)
    options = dict(
        host=host,
        port=sock.getsockname()[1],
        log_level=log_level,
        **uvicorn_options(config, http2=http2),
    )
    if log_format == "json":
        options["log_config"] = None
    log.info("HTTP/2: %s", http2_description(options))
    try:
        check_tls(config)
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            os.environ[CONFIG_ENV] = os.path.abspath(config_path)
            os.environ.update({LOG_FORMAT_ENV: log_format, LOG_LEVEL_ENV: log_level,
                               ACCESS_LOG_ENV: "1" if access_log else "0", IMPORTS_ENV: ",".join(imports)})
            # One scrape must show the sum over workers: they share prometheus_client's files.
            made_dir = MULTIPROC_ENV not in os.environ
            if made_dir:
                os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="mly-prometheus-")
            uv_config = MlyUvicornConfig("mly.server:create_app_from_env", factory=True, workers=workers, **options)
            try:
                supervisor = Multiprocess(uv_config, sockets=[sock])
            except TypeError:  # uvicorn < 0.36 wants the worker's target
                supervisor = Multiprocess(uv_config, target=uvicorn.Server(uv_config).run, sockets=[sock])  # type: ignore[call-arg]
            from mly.service.selftest import STARTUP_ERROR_FILE_ENV

            error_file = os.path.join(os.environ[MULTIPROC_ENV], "startup-error")
            os.environ[STARTUP_ERROR_FILE_ENV] = error_file
            try:
                supervisor.run()
                _raise_startup_error(error_file, [p.exitcode for p in supervisor.processes])
            finally:
                if made_dir:
                    shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)
            return
        app = build_app(config)
        # uvicorn re-raises the stop signal once it has shut down; a requested stop exits 0.
        signal.signal(signal.SIGTERM, _stopped)
        scheme = "https" if config.tls.cert_file else "http"
        log.info("serving %d model(s) on %s://%s:%d", len(config.models), scheme, host, options["port"])
        server = uvicorn.Server(MlyUvicornConfig(app, **options))
        server.run(sockets=[sock])
        if not server.started:  # the lifespan start-up failed (a model's self-test): exit status 3
            reason = getattr(app.state, "startup_error", None) or "the application did not start (see the log)"
            raise StartupError(reason)
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT once it has shut down: a clean stop
        pass
    finally:
        sock.close()
