"""Fault drills under load: a store node, then a server, killed; not one prediction fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aerospike_server import NAMESPACE
from fleet_drill import DrillReport, aerospike_drill, redis_drill


def check(report: DrillReport) -> None:
    print(report.text())  # the timeline, in the test's output
    assert report.failures == [], report.failures[:5]
    seconds = report.seconds()[:-1]  # the last second is cut short
    assert all(ok > 0 for _, ok, _, _ in seconds), "a second of the run completed no prediction"


def test_drill_on_an_aerospike_cluster(aerospike_cluster: Any, model_dirs: dict[str, str], tmp_path: Path) -> None:
    check(aerospike_drill(aerospike_cluster, model_dirs["keras"], tmp_path, namespace=NAMESPACE))


def test_drill_on_a_redis_cluster(redis_cluster: Any, model_dirs: dict[str, str], tmp_path: Path) -> None:
    check(redis_drill(redis_cluster, model_dirs["keras"], tmp_path))
