"""HTTP/2 conformance: h2spec's 146 cases against the real server, over h2c and over TLS, for each engine.

The h2spec binary sits in the shared tools folder beside the repository
(``shared/tools/h2spec/h2spec``; override with ``MLY_H2SPEC``). Where it is
absent the test skips, except under ``CI=true``, where the tools folder is
always there and a missing binary is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from http2.h2_setup import ENGINES, engine_env, h2_config
from live_server import LiveServer
from required import missing

H2SPEC_ENV = "MLY_H2SPEC"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

#: Cases that do not apply to this server, with the reason.
NOT_APPLICABLE = {
    # The port serves HTTP/1.1 and HTTP/2: bytes that are not the HTTP/2 preface are read as
    # HTTP/1.1 (answered 400 and closed), not as a broken HTTP/2 connection.
    "http2/3.5/2": "the port also serves HTTP/1.1",
}

#: The path h2spec sends its requests to. Cases such as malformed trailers or a body longer than
#: its content-length expect a stream error from frames sent after the request head; a handler
#: that answers before reading the body (a POST to /v1/api/health gets 405 at once) completes the
#: stream first, the server then stops the upload with RST_STREAM NO_ERROR (RFC 9113 §8.1, as Go
#: does) and the later frames are ignored. The eval handler reads the whole body first.
EVAL = "/v1/api/model/sli/eval"

#: Seconds h2spec waits for each expected frame. The server's idle, read and write timeouts
#: below are longer, so no case passes by the server closing an idle connection.
CASE_TIMEOUT_S = 3
SERVER_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def h2spec() -> str:
    path = Path(os.environ.get(H2SPEC_ENV) or REPO_ROOT.parent / "shared" / "tools" / "h2spec" / "h2spec")
    if not os.access(path, os.X_OK):
        message = f"h2spec not found at {path} (set {H2SPEC_ENV} to the binary)"
        missing(message)
    return str(path)


def cases(binary: str) -> list[str]:
    """Every case id (``http2/6.5/1``, ``hpack/2.3.3/1``, ...) from h2spec's dry run."""
    listing = subprocess.run([binary, "--dryrun"], capture_output=True, text=True, timeout=60).stdout
    found: list[str] = []
    spec = section = ""
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("Generic tests"):
            spec = "generic"
        elif text.startswith("Hypertext Transfer Protocol"):
            spec = "http2"
        elif text.startswith("HPACK"):
            spec = "hpack"
        elif match := re.match(r"(\d+(?:\.\d+)*)\. ", text):
            section = match.group(1)
        elif match := re.match(r"(\d+): ", text):
            found.append(f"{spec}/{section}/{match.group(1)}")
    return found


@pytest.fixture(scope="module", params=[(tls, engine) for tls in ("h2c", "tls") for engine in ENGINES],
                ids=lambda p: "-".join(p))
def server(request: pytest.FixtureRequest, h2spec: str, model_dirs: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose timeouts exceed h2spec's (started only where h2spec is there)."""
    config = h2_config(model_dirs)
    config["Endpoint"].update(IdleTimeoutMs=SERVER_TIMEOUT_MS, ReadTimeoutMs=SERVER_TIMEOUT_MS,
                              WriteTimeoutMs=SERVER_TIMEOUT_MS)
    tls, engine = request.param
    if tls == "tls":
        cert, key = request.getfixturevalue("certificate")
        config["TLS"] = {"CertFile": str(cert), "KeyFile": str(key)}
    with engine_env(engine):
        live = LiveServer(config, tmp_path_factory.mktemp("h2spec"), protocol="mly").start()
    yield live
    live.stop()


def test_h2spec(h2spec: str, server: LiveServer) -> None:
    """Every case passes but those that do not apply, which are skipped by name."""
    every = cases(h2spec)
    assert len(every) >= 146 and set(NOT_APPLICABLE) <= set(every), every  # h2spec 2.6.0 has 146
    selected = [case for case in every if case not in NOT_APPLICABLE]
    flags = ["-t", "-k"] if server.url.startswith("https://") else []
    expected = f"{len(selected)} tests, {len(selected)} passed, 0 skipped, 0 failed"
    reports = []
    # Another run only if one failed: a few cases (a DATA or WINDOW_UPDATE frame sent after a request
    # the server may answer at once, e.g. 6.9.1/3 on a GET it answers before h2spec's next frame
    # arrives) race with an answer RFC 9113 allows, after which the late frame is to be ignored.
    # A real defect fails every run.
    for _ in range(5):
        done = subprocess.run(
            [h2spec, "-h", "127.0.0.1", "-p", str(server.port), "-P", EVAL, "-o", str(CASE_TIMEOUT_S),
             *flags, *selected],
            capture_output=True, text=True, timeout=600,
        )
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
        if done.returncode == 0 and expected in summary:
            return
        reports.append(done.stdout[done.stdout.find("Failures"):] or summary)
    raise AssertionError("\n\n".join(reports))
