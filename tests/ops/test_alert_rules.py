"""The Prometheus files in deploy/prometheus pass Prometheus's own checks: the scrape config and
the rules are valid, and the rules' unit tests (series in, alerts out) pass under ``promtool``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from prometheus_server import DEPLOY, require_binary

PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "mly-alerts.yml"
RULE_TESTS = PROMETHEUS / "mly-alerts.test.yml"


def promtool(*args: str) -> str:
    """Run ``promtool`` in deploy/prometheus (the files name each other relatively); its output."""
    done = subprocess.run([require_binary("promtool", "prometheus"), *args], cwd=PROMETHEUS,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_scrape_config_and_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in promtool("check", "rules", RULES.name)


def test_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS.name)


def test_every_alert_says_what_is_wrong_and_where_to_look() -> None:
    for rule in alert_rules():
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), rule["alert"]
        assert annotations.get("runbook", "").strip(), rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("page", "ticket"), rule["alert"]


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert sorted({rule["alert"] for rule in alert_rules()} - fired) == []


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules whose 5xx and 429 thresholds were loosened tenfold must fail."""
    loosened = RULES.read_text().replace("> 0.01", "> 0.1")
    assert loosened != RULES.read_text()
    (tmp_path / RULES.name).write_text(loosened)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    done = subprocess.run([require_binary("promtool", "prometheus"), "test", "rules", RULE_TESTS.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "MlyHigh5xxRate" in done.stdout + done.stderr
