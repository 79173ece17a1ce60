"""One version, written once (``mly/_version.py``): the package metadata, ``mly.__version__``,
``mly-fast --version`` and the changelog all follow it."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from click.testing import CliRunner
from packaging.version import Version

import mly
from mly.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_metadata_reads_the_version_from_mly_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"], "pyproject.toml writes the version a second time"
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mly._version.__version__"}
    written = re.findall(r'^__version__ = "([^"]+)"$', (ROOT / "mly" / "_version.py").read_text(), re.M)
    assert written == [mly.__version__]
    assert str(Version(mly.__version__)) == mly.__version__  # a canonical PEP 440 version


def test_mly_fast_version_prints_the_package_version() -> None:
    done = CliRunner().invoke(main, ["--version"])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"mly-fast, version {mly.__version__}"


def test_the_changelog_has_unreleased_on_top_and_no_version_past_this_one() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == "Unreleased"
    released = [Version(v) for v in headings[1:]]
    assert released == sorted(released, reverse=True), "released sections are newest first"
    assert all(v <= Version(mly.__version__) for v in released), "a section for a version not yet defined"
