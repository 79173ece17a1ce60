"""``mly-fast``: a thin click shell over ``mly.server.run`` and ``config.load``."""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import importlib.util
import io
import logging
import os
import sys

import click

from mly._version import __version__
from mly.errors import MlyError

__all__ = ["main"]

# TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) buries mly's own output; what
# this does not reach is filtered at import (mly.logs.quiet).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Exit code for a config or model that cannot be served (uvicorn's STARTUP_FAILURE).
STARTUP_FAILURE = 3


#: What ``serve`` and ``check`` need beyond the client install (the ``server`` extra).
SERVER_MODULES = ("tensorflow", "starlette", "uvicorn", "uvloop", "httptools")


def _require_server_extra(command: str) -> None:
    """A plain ``pip install mly`` is the client: say which extra to install rather
    than fail later with an import traceback."""
    missing = []
    for name in SERVER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        click.echo(
            f"mly-fast {command}: the server is not installed (missing: {', '.join(missing)}); "
            "install it with: pip install 'mly[server]'",
            err=True,
        )
        sys.exit(STARTUP_FAILURE)


def _import_modules(modules: tuple[str, ...]) -> None:
    from mly.server import import_modules

    try:
        import_modules(modules)
    except MlyError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"auto_envvar_prefix": "MLY", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mly-fast")
def main() -> None:
    """Serve TensorFlow SavedModels over the viant/mly HTTP API with a prediction cache."""


_import_option = click.option(
    "--import", "imports", multiple=True, metavar="MODULE",
    help="Import MODULE first (to register transformers); repeatable.",
)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=None, help="Port (default: Endpoint.Port of the config).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes; each loads every model.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]),
              help="json: every log line is one JSON object (the access log's fields as keys).")
@click.option("--access-log", is_flag=True, default=False,
              help="One log line per eval request (as Endpoint.AccessLog: true).")
@click.option("--http2/--no-http2", default=None,
              help="Serve HTTP/2 (h2c prior knowledge; ALPN h2 with TLS) beside HTTP/1.1 "
                   "[default: Endpoint.HTTP2, true].")
@_import_option
def serve(config: str, host: str, port: int | None, workers: int, log_level: str, log_format: str,
          access_log: bool, http2: bool | None, imports: tuple[str, ...]) -> None:
    """Load every model of CONFIG and serve them."""
    _require_server_extra("serve")
    from mly.logs.format import configure_logging

    configure_logging(log_level, log_format)
    with contextlib.suppress(io.UnsupportedOperation, ValueError):  # stderr without a file descriptor
        faulthandler.enable()  # a crash in native code (TensorFlow, Cython) leaves a Python traceback
    _import_modules(imports)
    from mly.server import run

    try:
        run(config, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log,
            log_format=log_format, http2=http2, imports=imports)
    except MlyError as exc:
        click.echo(f"mly-fast: cannot start: {exc}", err=True)
        sys.exit(STARTUP_FAILURE)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@_import_option
def check(config: str, imports: tuple[str, ...]) -> None:
    """Load and validate CONFIG and its models; print what each model takes and returns."""
    _require_server_extra("check")
    logging.basicConfig(level="WARNING")
    from mly.logs.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    _import_modules(imports)
    from mly.config.load import load_config
    from mly.service.registry import ModelRegistry

    try:
        cfg = load_config(config)
        registry = ModelRegistry(cfg, inference_threads=1)
        try:
            registry.load_all()
        finally:
            registry.close()
    except MlyError as exc:
        click.echo(f"mly-fast: {config}: {exc}", err=True)
        sys.exit(STARTUP_FAILURE)
    for model_id, service in registry.services.items():
        generation = service.current
        interface = generation.interface
        click.echo(f"model {model_id} ({service.config.url})")
        for field in interface.inputs:
            flags = [k for k, v in (("auxiliary", field.auxiliary), ("wildcard", field.wildcard)) if v]
            if field.precision:
                flags.append(f"precision={field.precision}")
            layer = generation.dictionary.layer(field.name) if generation.dictionary else None
            if layer is not None:
                flags.append(f"vocabulary={layer.size}")
            click.echo(f"  input  {field.name}: {field.data_type} {' '.join(flags)}".rstrip())
        for out in interface.outputs:
            click.echo(f"  output {out.name}: {out.data_type}")
        click.echo(f"  dictHash {generation.dict_hash}; cacheable: {generation.key_schema is not None}")
    from mly.config.unsupported import unsupported_settings

    for warning in unsupported_settings(cfg):
        click.echo(f"warning: {warning}")
    from mly.cache.probe import unreachable_stores

    for warning in unreachable_stores(cfg):  # a warning only: serve starts and treats the store as down
        click.echo(f"warning: {warning}")
    click.echo(f"ok: {len(registry.services)} model(s)")
