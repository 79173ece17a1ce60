"""The published artefacts as a user meets them: the sdist and the manylinux wheel, installed with
pip into fresh virtualenvs without a compiler, from outside the source tree, then the client run
against a real server started from the same wheel's ``mly[server]`` extra. Once per supported
Python found on the machine: other versions get a wheel built from the sdist by pip."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from model_builders import expected_keras_lookup
from serve_process import ServeProcess
from wheel_install import (
    PYPROJECT,
    ROOT,
    SERVER_ONLY,
    SUPPORTED,
    Dist,
    bare_env,
    installed,
    installed_pythons,
    new_venv,
    pip_install,
    run,
    supported_pythons,
    this_python,
    tool_env,
)

import mly

# Building wheels compiles the Cython modules once per Python: more than the default 300 s on a
# busy 2-core machine when the first test sets everything up.
pytestmark = [pytest.mark.wheel, pytest.mark.timeout(1800)]

NATIVE = sorted(p.stem for p in (ROOT / "mly" / "_native").glob("*.pyx"))

CLIENT_SCRIPT = r'''
import json, sys
import mly
import mly.client
lazy = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "httpx", "asyncio"))
from mly.client import Client, MlyError, UnknownFieldError
from mly.client.errors import NotFoundError

host = sys.argv[1]
out = {"mly": mly.__file__, "version": mly.__version__, "lazy_after_import": lazy}
row = {"sa": "a", "sl": "b", "i1": 20, "fl": 1.25}
with Client("k", hosts=[host]) as client:
    first, again = client.predict(row), client.predict(row)
    out["single"] = [first.status, first.data, again.status, again.data]
    batch = client.predict([row, dict(row, sa="c", fl=2.5)])
    out["batch"] = [batch.status, batch.cached_rows, batch.data]
    message = client.new_message().string_key("sa", "c").string_key("sl", "a").int_key("i1", 30)
    ran = client.run(message.float_key("fl", 6.25))
    out["message"] = [ran.status, ran.data, client.predict({"sa": "c", "sl": "a", "i1": 30, "fl": 6.25}).status]
    try:
        client.predict(dict(row, extra=1))
    except UnknownFieldError as exc:
        out["bad_input"] = [type(exc).__name__, exc.status, str(exc)]
try:
    Client("no-such-model", hosts=[host])
except NotFoundError as exc:
    out["not_found"] = [type(exc).__name__, exc.status, isinstance(exc, MlyError)]
out["server_side_modules"] = sorted(
    m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "starlette", "uvicorn", "h2"))
print(json.dumps(out))
'''


def expected(row: dict[str, Any]) -> dict[str, Any]:
    out = expected_keras_lookup([row["sa"]], [row["sl"]], [row["i1"]], [round(row["fl"], 2)])
    return {"label_id": int(out["label_id"][0, 0]), "score": float(out["score"][0, 0]), "vec": out["vec"][0].tolist()}


def same(got: dict[str, Any], row: dict[str, Any]) -> bool:
    want = expected(row)
    return got["label_id"] == want["label_id"] and bool(np.allclose(got["score"], want["score"])) and bool(
        np.allclose(got["vec"], want["vec"]))


def test_the_sdist_carries_the_cython_sources_and_their_c_but_nothing_built(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in sdist.getnames() if "/" in n}
    for module in NATIVE:
        assert {f"mly/_native/{module}.pyx", f"mly/_native/{module}.c"} <= names, module
    assert {"pyproject.toml", "setup.py", "mly/_version.py", "mly/py.typed"} <= names
    assert not [n for n in names if n.endswith((".so", ".html")) or n.startswith("tests/")]


def test_the_wheel_is_manylinux_with_every_native_module_and_passes_twine(dist: Dist) -> None:
    assert re.fullmatch(rf"mly-{re.escape(mly.__version__)}-cp\d+-cp\d+-manylinux.*\.whl", dist.wheel.name)
    from zipfile import ZipFile

    with ZipFile(dist.wheel) as wheel:
        names = wheel.namelist()
    for module in NATIVE:
        assert [n for n in names if re.fullmatch(rf"mly/_native/{module}\.cpython-.*\.so", n)], module
    assert not [n for n in names if n.endswith((".pyx", ".c"))]
    run([sys.executable, "-m", "twine", "check", "--strict", dist.sdist, dist.wheel])


def test_the_stated_pythons_are_the_classifiers_and_the_machine_has_them() -> None:
    classifiers = PYPROJECT["project"]["classifiers"]
    stated = sorted(c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert stated and all(v in SUPPORTED for v in stated), (stated, SUPPORTED)
    lowest = tuple(map(int, stated[0].split(".")))
    assert f"{lowest[0]}.{lowest[1] - 1}" not in SUPPORTED, "requires-python admits a version the classifiers omit"
    assert this_python() in supported_pythons()
    untested = [v for v in stated if v not in installed_pythons()]
    print(f"supported {stated}; tested here: {supported_pythons()}; not installed here: {untested}")


@pytest.fixture(scope="module")
def wheels(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A wheel per supported installed Python: the repaired one for this Python; for the others,
    pip builds one from the sdist (a clean build environment, the compiler, nothing else) and
    auditwheel repairs it, as ``make dist`` does."""
    built = {this_python(): dist.wheel}
    for version in supported_pythons():
        if version in built:
            continue
        work = tmp_path_factory.mktemp(f"wheel-{version}")
        venv = new_venv(installed_pythons()[version], work / "venv")
        raw = work / "raw"
        run([venv / "bin" / "python", "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "--wheel-dir", raw,
             dist.sdist], cwd=work)
        run([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", work, next(raw.glob("mly-*.whl"))],
            env=tool_env())
        built[version] = next(work.glob("mly-*manylinux*.whl"))
    return built


@pytest.mark.parametrize("python", supported_pythons())
def test_the_client_wheel_installs_lean_and_runs_against_the_wheels_server(
    python: str, wheels: dict[str, Path], wheel_server: ServeProcess, tmp_path: Path
) -> None:
    venv = new_venv(installed_pythons()[python], tmp_path / "venv")
    pip_install(venv, wheels[python], cwd=tmp_path)
    assert "mly" in installed(venv)
    assert not installed(venv) & set(SERVER_ONLY), "the client install pulled in the server"
    env = bare_env(venv)
    version = run([venv / "bin" / "mly-fast", "--version"], env=env, cwd=tmp_path).stdout.strip()
    assert version == f"mly-fast, version {mly.__version__}"
    refused = subprocess.run([venv / "bin" / "mly-fast", "check", "config.yaml"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3 and "pip install 'mly[server]'" in refused.stderr

    script = tmp_path / "use_client.py"
    script.write_text(CLIENT_SCRIPT)
    host = f"127.0.0.1:{wheel_server.port}"
    out = json.loads(run([venv / "bin" / "python", script, host], env=env, cwd=tmp_path).stdout)

    assert out["mly"].startswith(str(venv)) and out["version"] == mly.__version__
    assert out["lazy_after_import"] == []
    assert out["server_side_modules"] == []
    row = {"sa": "a", "sl": "b", "i1": 20, "fl": 1.25}
    status, data, again_status, again = out["single"]
    assert (status, again_status) == ("ok", "cached") and again == data and same(data, row)
    status, cached_rows, rows = out["batch"]
    assert status == "ok" and cached_rows == 1 and same(rows[0], row) and same(rows[1], dict(row, sa="c", fl=2.5))
    status, data, repeat = out["message"]
    assert status == "ok" and repeat == "cached" and same(data, {"sa": "c", "sl": "a", "i1": 30, "fl": 6.25})
    name, code, text = out["bad_input"]
    with httpx.Client(base_url=wheel_server.base, timeout=30) as http:
        answer = http.post("/v1/api/model/k/eval", json=dict(row, extra=1))
    assert (name, code) == ("UnknownFieldError", 400) and answer.status_code == 400
    assert text == answer.json()["error"] and "extra" in text
    assert out["not_found"] == ["NotFoundError", 404, True]
