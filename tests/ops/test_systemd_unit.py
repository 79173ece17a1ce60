"""deploy/systemd/mly.service passes ``systemd-analyze verify`` and does what the README says:
runs ``mly-fast serve``, stops it with SIGTERM, restarts it on failure (not after a start-up
failure), reads its environment from a file whose variables ``mly-fast serve`` reads."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import click
from prometheus_server import DEPLOY, require_binary
from serve_process import cli_env, mly_fast

from mly.cli import STARTUP_FAILURE, serve

UNIT = DEPLOY / "systemd" / "mly.service"
ENV_FILE = DEPLOY / "systemd" / "mly.env"
INSTALLED = "/opt/mly/.venv/bin/mly-fast"


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """Verified as written, except the executable: this machine's mly-fast instead of /opt's
    (``verify`` checks that it exists). Warnings fail too: ``verify`` exits 0 on an unknown key."""
    analyze = require_binary("systemd-analyze", "systemd")
    unit = tmp_path / "mly.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, mly_fast()[0]))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_runs_serve_stops_with_sigterm_restarts_on_failure() -> None:
    service = service_section()
    assert service["ExecStart"] == f"{INSTALLED} serve ${{MLY_CONFIG_FILE}}"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(STARTUP_FAILURE)
    assert service["EnvironmentFile"] == "/etc/mly/mly.env"


def test_the_environment_file_sets_only_what_serve_reads() -> None:
    settings = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", ENV_FILE.read_text(), re.MULTILINE))
    assert "MLY_CONFIG_FILE" in settings
    # click reads each option of `mly-fast serve` from MLY_SERVE_<OPTION> (auto_envvar_prefix "MLY").
    options = {f"MLY_SERVE_{p.name.upper()}": p for p in serve.params if isinstance(p, click.Option) and p.name}
    for name, value in settings.items():
        if name == "MLY_CONFIG_FILE":
            continue
        assert name in options, name
        options[name].type.convert(value, options[name], None)  # a value the option takes


def test_serve_reads_its_options_from_the_environment(tmp_path: Path) -> None:
    """The MLY_SERVE_<OPTION> names are click's: a bad value there is refused as the option's."""
    done = subprocess.run([*mly_fast(), "serve", str(tmp_path / "absent.yaml")], capture_output=True, text=True,
                          timeout=120, env=cli_env(MLY_SERVE_WORKERS="0"))
    assert done.returncode == 2
    assert "Invalid value for '--workers'" in done.stderr
