"""``bench/locustfile.py`` runs: every scenario sends requests to a real ``mly-fast serve`` and none fails.

Locust runs headless in its own process (its gevent monkeypatching must stay out of pytest) for
three seconds; only counts are asserted, never a time.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from required import missing
from serve_process import ServeProcess, cli_env

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
USER_CLASSES = ("HotRowUser", "ColdRowUser", "BatchUser", "MixUser",
                "ClientHotUser", "ClientColdUser", "ClientBatchUser", "ClientMixUser")


def locust_command() -> list[str]:
    exe = shutil.which("locust", path=os.path.dirname(sys.executable)) or shutil.which("locust")
    if exe is None:
        message = "locust is not installed (pip install -e '.[dev]')"
        missing(message)
    return [exe]


@pytest.fixture(scope="module")
def served(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """The lookup test model (string and integer vocabularies, a keyed float) with a memory cache."""
    folder = tmp_path_factory.mktemp("locust-server")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({
        "Models": [{"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 8}}],
    }))
    with ServeProcess(config, log_path=folder / "serve.log") as server:
        yield server


def run_locust(host: str, csv_prefix: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [*locust_command(), "-f", str(LOCUSTFILE), "--headless", "--host", host, "--only-summary",
               "--csv", str(csv_prefix), "--loglevel", "WARNING", *args]
    return subprocess.run(command, cwd=ROOT, env=cli_env(**env), capture_output=True, text=True, timeout=120)


def test_every_scenario_sends_requests_and_none_fails(served: ServeProcess, tmp_path: Path) -> None:
    users = str(len(USER_CLASSES))  # one user of each class (equal weights)
    done = run_locust(served.base, tmp_path / "run", "-u", users, "-r", users, "-t", "3s",
                      "--mly-model", "sli", "--mly-hot-rows", "200", *USER_CLASSES,
                      LOCUST_MLY_BATCH_SIZE="8")  # one option from its environment variable
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    with (tmp_path / "run_stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    total = next(row for row in rows if row["Name"] == "Aggregated")
    assert int(total["Failure Count"]) == 0, output
    for name in USER_CLASSES:
        sent = sum(int(row["Request Count"]) for row in rows if row["Name"].split(" ")[0] == name)
        assert sent > 0, f"{name} made no request\n{output}"
    with (tmp_path / "run_exceptions.csv").open() as fh:
        assert list(csv.DictReader(fh)) == [], output


def test_an_unknown_model_stops_the_run_with_an_error(served: ServeProcess, tmp_path: Path) -> None:
    done = run_locust(served.base, tmp_path / "run", "-u", "1", "-r", "1", "-t", "30s",
                      "--mly-model", "no-such-model", "HotRowUser")
    assert done.returncode != 0
    assert "cannot prepare the load test" in done.stderr and "404" in done.stderr, done.stderr
    with (tmp_path / "run_stats.csv").open() as fh:
        assert [row["Request Count"] for row in csv.DictReader(fh)] == ["0"]  # only the Aggregated row
