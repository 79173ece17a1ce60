"""``h2load`` (Debian's nghttp2-client) against the server: many streams per connection, counts only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
from http2.h2_setup import MAX_STREAMS, ROW
from live_server import LiveServer
from required import missing


def h2load() -> str:
    path = shutil.which("h2load")
    if path is None:
        message = "h2load not found (apt-get install -y nghttp2-client)"
        missing(message)
    return path


def test_h2load_many_streams_per_connection(h2server: LiveServer, tmp_path: Path) -> None:
    body = tmp_path / "row.json"
    body.write_bytes(orjson.dumps(ROW))
    done = subprocess.run(
        [h2load(), "-n", "2000", "-c", "2", "-m", str(MAX_STREAMS), "-d", str(body),
         "-H", "content-type: application/json", f"{h2server.url}/v1/api/model/sli/eval"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed", done.stdout), done.stdout
    assert "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx" in done.stdout
    assert "Application protocol: h2c" in done.stdout
