"""Run the server: load every model first, then serve on uvicorn + uvloop + httptools.

Models load before the socket opens, so a bad config or model stops the start
with its reason instead of serving 503s.
"""

from __future__ import annotations

import gc
import logging
import os
import socket

from mly.config.load import load_config
from mly.config.schema import Config
from mly.errors import ConfigError

__all__ = ["build_app", "create_app_from_env", "run"]

CONFIG_ENV = "MLY_CONFIG"
log = logging.getLogger("mly.server")


def build_app(config: Config):  # type: ignore[no-untyped-def]
    """A ready Starlette app with every model loaded (raises ``ModelLoadError``)."""
    from mly.config.unsupported import unsupported_settings
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


def freeze_heap() -> None:
    """Move everything alive now (TensorFlow's object graph above all) out of the GC's sight.

    A loaded model is hundreds of thousands of tracked objects; every full
    collection walked them all and stalled the event loop for ~180 ms, which
    was the whole p99 under load. Frozen objects are still freed by reference
    counting; a reload unfreezes, collects and freezes again (``ModelService``).
    """
    gc.collect()
    gc.freeze()


def create_app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory for ``--workers N``: each worker process loads the models itself."""
    return build_app(load_config(os.environ[CONFIG_ENV]))


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


def run(config_path: str, *, host: str = "0.0.0.0", port: int | None = None, workers: int = 1,
        log_level: str = "info") -> None:
    import uvicorn

    config = load_config(config_path)
    sock = bind_socket(host, port if port is not None else config.endpoint.port)
    options = dict(
        host=host,
        port=sock.getsockname()[1],
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        timeout_keep_alive=max(5, config.endpoint.read_timeout_ms // 1000),
        access_log=False,
    )
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            os.environ[CONFIG_ENV] = os.path.abspath(config_path)
            uv_config = uvicorn.Config(
                "mly.server:create_app_from_env", factory=True, workers=workers, **options  # type: ignore[arg-type]
            )
            try:
                supervisor = Multiprocess(uv_config, sockets=[sock])
            except TypeError:  # uvicorn < 0.36 wants the worker's target
                supervisor = Multiprocess(uv_config, target=uvicorn.Server(uv_config).run, sockets=[sock])  # type: ignore[call-arg]
            supervisor.run()
            return
        app = build_app(config)
        log.info("serving %d model(s) on http://%s:%d", len(config.models), host, options["port"])
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])  # type: ignore[arg-type]
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT once it has shut down: a clean stop
        pass
    finally:
        sock.close()
