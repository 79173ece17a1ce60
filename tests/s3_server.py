"""A real S3-compatible server on loopback (moto's server mode) for remote model sources."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from redis_server import free_port

#: What s3fs/botocore need to talk to the test server; a ``mly-fast serve`` child gets these plus
#: ``FSSPEC_S3_ENDPOINT_URL`` (see ``child_env``).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_server() -> Iterator[str]:
    """Serve S3 on loopback and point this process's fsspec at it; yields the endpoint URL."""
    import fsspec
    import moto.server

    server = moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    fsspec.config.conf["s3"] = {"endpoint_url": endpoint}  # what FSSPEC_S3_ENDPOINT_URL sets
    try:
        yield endpoint
    finally:
        fsspec.config.conf.pop("s3", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def child_env(endpoint: str) -> dict[str, str]:
    """The variables a child process needs to read ``s3://`` from ``endpoint``."""
    return {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint}
