"""h2spec, the HTTP/2 conformance suite, against the server over h2c and TLS, for each engine.

The binary lives in the ``shared`` folder beside the repository (``shared/tools/h2spec/h2spec``);
without it these tests skip (in CI they fail). One case is left out: on a
port that serves HTTP/1.1 and HTTP/2, an invalid connection preface (http2/3.5/2) is HTTP/1.1
by design, and gets an HTTP/1.1 answer rather than a GOAWAY.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from live_server import LiveServer

H2SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "h2spec" / "h2spec"
#: The one case that does not apply to a port that also serves HTTP/1.1.
NOT_APPLICABLE = {"http2/3.5/2"}


def h2spec() -> Path:
    if not H2SPEC.exists():
        message = f"h2spec not found at {H2SPEC}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return H2SPEC


def failures(server: LiveServer, report: Path, *tls: str) -> set[str]:
    """The ids (``http2/6.5/1``) of the cases that failed; every case must have run."""
    done = subprocess.run([str(h2spec()), "-h", "127.0.0.1", "-p", str(server.port), "-P", "/v1/api/health",
                           "-o", "5", "-j", str(report), *tls], capture_output=True, text=True, timeout=600)
    assert report.exists(), done.stdout + done.stderr
    failed = set()
    cases = 0
    for suite in ET.parse(report).getroot().iter("testsuite"):
        section = suite.get("package", "")
        for number, case in enumerate(suite.iter("testcase"), start=1):
            cases += 1
            if case.find("failure") is not None or case.find("error") is not None:
                failed.add(f"{section}/{number}")
    assert cases >= 146, f"h2spec ran {cases} cases:\n{done.stdout}"
    return failed


def test_h2spec_over_h2c(h2server: LiveServer, tmp_path: Path) -> None:
    failed = failures(h2server, tmp_path / "h2c.xml")
    assert failed <= NOT_APPLICABLE, sorted(failed - NOT_APPLICABLE)


def test_h2spec_over_tls(tls_server: LiveServer, tmp_path: Path) -> None:
    failed = failures(tls_server, tmp_path / "tls.xml", "-t", "-k")
    assert failed <= NOT_APPLICABLE, sorted(failed - NOT_APPLICABLE)
