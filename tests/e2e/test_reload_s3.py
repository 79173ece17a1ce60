"""Models from ``s3://``: loaded and hot-reloaded from a real S3-compatible server on loopback.

The server is moto's server mode (``moto.server.ThreadedMotoServer``): a real
HTTP S3 endpoint, so s3fs/botocore do real requests and real listings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from live_server import LiveServer
from model_builders import build_changed_vocab_model
from s3_server import s3_server

s3fs = pytest.importorskip("s3fs", reason="pip install 'mly[s3]'")
pytest.importorskip("moto.server", reason="pip install 'moto[server]'")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


def upload(fs: object, local: str, remote: str) -> None:
    fs.put(local.rstrip("/") + "/", remote, recursive=True)  # type: ignore[attr-defined]


def test_load_and_reload_from_s3(s3_endpoint: str, model_dirs: dict[str, str], tmp_path: Path) -> None:
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("models")
    upload(fs, model_dirs["keras"], "models/ctr")
    config = {
        "Models": [{"ID": "s3m", "URL": "s3://models/ctr", "Location": str(tmp_path / "copies"),
                    "ReloadIntervalSec": 0.2, "UseDict": True, "DataStore": "mem",
                    "Inputs": [{"Name": "fl", "Precision": 1}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 2}}],
    }
    server = LiveServer(config, tmp_path).start()
    try:
        service = server.registry.get("s3m")
        first_path = service.current.loaded.path
        assert first_path.startswith(str(tmp_path / "copies"))
        row = {"sa": "d", "sl": "a", "i1": 10, "fl": 1.0}
        with server.client() as client:
            before = client.post("/v1/api/model/s3m/eval", content=orjson.dumps(row)).json()
            assert before["status"] == "ok"

            fs.rm("models/ctr", recursive=True)
            upload(fs, build_changed_vocab_model(str(tmp_path / "v2")), "models/ctr")
            deadline = time.monotonic() + 90
            while service.reloads < 1 or not service.healthy:
                assert time.monotonic() < deadline, f"no reload from s3 ({service.error})"
                response = client.post("/v1/api/model/s3m/eval", content=orjson.dumps(row))
                assert response.status_code == 200, response.text  # never a failed request
                time.sleep(0.05)
            after = client.post("/v1/api/model/s3m/eval", content=orjson.dumps(row)).json()
        assert after["dictHash"] != before["dictHash"]
        assert after["data"] != before["data"]  # "d" is in the new vocabulary
        layer = service.current.dictionary.layer("sa")
        assert layer is not None and layer.strings == ("a", "b", "c", "d")
        # The previous copy is discarded once the new one serves.
        assert not os.path.exists(first_path)
    finally:
        server.stop()
