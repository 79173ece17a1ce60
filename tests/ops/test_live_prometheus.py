"""A real Prometheus scraping a real ``mly-fast serve --workers 2`` (with a Redis-backed cache):
what its HTTP API answers after known traffic, the alert rules evaluated against the live series,
and the Grafana dashboard's queries checked against the server's live ``/metrics``. Scrapes and
rule evaluations run every second, so the traffic takes seconds."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import DEPLOY, PrometheusServer, require_binary
from promql import problems
from redis_server import RedisServer
from serve_process import ServeProcess

from mly.metrics.histogram import LATENCY_BUCKETS_S
from mly.metrics.model import PERF_KEYS

RULES = DEPLOY / "prometheus" / "mly-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "mly.json"
#: Panels with nothing to show without 5xx or 429 answers (their numerator has no series).
EMPTY_WITHOUT_ERRORS = {"5xx and 429 share of eval requests"}
NUM_OK = 30
NUM_INVALID = 5
CACHE_ROWS = 10
CACHE_REPEATS = 2
#: Label values the code defines that this traffic does not produce (no 5xx, no 429 here).
CODE_VALUES = {("mly_requests_total", "outcome"): PERF_KEYS}


@dataclass
class Ops:
    served: ServeProcess
    prometheus: PrometheusServer
    latencies_s: list[float] = field(default_factory=list)
    """Client-side latency of each phase-two eval request to ``num``: the server's is at most this."""
    window_s: int = 0
    """A window that starts after phase one was scraped and ends after phase two was scraped."""
    at: float = 0.0
    """The end of that window (a Unix time to evaluate queries at)."""


def send_num(ops: Ops, n_ok: int, n_invalid: int, timed: bool) -> None:
    for i in range(n_ok):  # a new connection each: the kernel spreads them over the workers
        with ops.served.client() as client:
            started = time.perf_counter()
            response = client.post("/v1/api/model/num/eval", json={"x1": i, "x2": 0.5})
            if timed:
                ops.latencies_s.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    for _ in range(n_invalid):
        with ops.served.client() as client:
            assert client.post("/v1/api/model/num/eval", content=b"{").status_code == 400


def send_cached(ops: Ops) -> None:
    """One connection, so one worker and one memory tier: the first pass misses, the repeats hit."""
    # Distinct keys: fl (kept to 2 decimals in the key) differs; an out-of-vocabulary i1 would not.
    rows = [{"sa": "a", "sl": "b", "i1": 10, "fl": round(0.25 + i / 100, 2)} for i in range(CACHE_ROWS)]
    with ops.served.client() as client:
        for row in rows * (1 + CACHE_REPEATS):
            response = client.post("/v1/api/model/sli/eval", content=orjson.dumps(row))
            assert response.status_code == 200, response.text


def settled(prometheus: PrometheusServer, expr: str, expected: float) -> None:
    prometheus.wait_for(f"sum({expr})", lambda r: bool(r) and r[0]["value"] == expected)


@pytest.fixture(scope="module")
def ops(model_dirs: dict[str, str], redis_servers: dict[str, RedisServer],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    require_binary("prometheus", "prometheus")  # before the server's start, not after
    redis = redis_servers["l1"]
    redis.ensure_up()
    redis.flush()
    workdir = tmp_path_factory.mktemp("ops")
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump({
        "Models": [{"ID": "num", "URL": model_dirs["numeric"], "UseDict": False},
                   {"ID": "sli", "URL": model_dirs["keras"], "DataStore": "tiers",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [{"ID": "l1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis.port}],
        "Datastores": [{"ID": "tiers", "Cache": {"SizeMb": 4}, "Connection": "l1", "Namespace": "ops",
                        "Dataset": "sli", "TimeToLiveMs": 60000}],
    }))
    with ServeProcess(config, "--workers", "2", "--log-level", "warning", log_path=workdir / "serve.log") as served, \
            PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{served.port}"], [RULES]) as prometheus:
        ops = Ops(served, prometheus)
        send_num(ops, NUM_OK, NUM_INVALID, timed=False)  # phase one: every series exists from here on
        settled(prometheus, 'mly_requests_total{model="num", route="eval", outcome="eval"}', NUM_OK)
        time.sleep(1.5)  # the window below starts after a scrape that saw phase one
        start = time.time()
        send_num(ops, NUM_OK, NUM_INVALID, timed=True)
        send_cached(ops)
        settled(prometheus, 'mly_requests_total{model="num", route="eval", outcome="eval"}', 2 * NUM_OK)
        settled(prometheus, 'mly_cache_lookups_total{datastore="tiers", outcome="hit"}', CACHE_ROWS * CACHE_REPEATS)
        time.sleep(1.5)  # and ends after a scrape that saw phase two
        ops.at = time.time()
        ops.window_s = math.ceil(ops.at - start)  # from at most 1 s before phase two, after phase one
        yield ops


def at_end(ops: Ops, expr: str) -> float:
    data = ops.prometheus.api("query", query=expr, time=f"{ops.at:.3f}")
    assert len(data["result"]) == 1, (expr, data)
    return float(data["result"][0]["value"][1])


def test_request_counts_are_summed_over_both_workers(ops: Ops) -> None:
    def total(expr: str) -> float:
        return at_end(ops, f"sum({expr})")

    assert total('mly_requests_total{model="num", route="eval", outcome="eval"}') == 2 * NUM_OK
    assert total('mly_requests_total{model="num", route="eval", outcome="invalid"}') == 2 * NUM_INVALID
    assert total('mly_request_duration_seconds_count{model="num", route="eval"}') == 2 * (NUM_OK + NUM_INVALID)
    assert total('mly_requests_total{model="sli", route="eval", outcome="eval"}') == CACHE_ROWS * (1 + CACHE_REPEATS)
    assert total('mly_batch_rows_sum{model="num"}') == 2 * NUM_OK  # rows TensorFlow evaluated
    assert total('mly_batch_rows_sum{model="sli"}') == CACHE_ROWS  # only the misses
    # Each worker counts only its own (gmetric JSON is per worker): the sum above came from both.
    per_worker = set()
    for _ in range(10):
        with ops.served.client() as client:
            per_worker.add(client.get("/v1/api/metric/operation/numPerf/cumulative/eval").json())
    assert min(per_worker) < 2 * NUM_OK, per_worker


def test_rate_over_the_traffic_window(ops: Ops) -> None:
    w = ops.window_s
    rate = at_end(ops, f'sum(rate(mly_requests_total{{model="num", route="eval"}}[{w}s]))')
    # Prometheus extrapolates a rate to the window's edges: at most one scrape interval on each side.
    sent = NUM_OK + NUM_INVALID
    assert sent <= rate * w <= sent * w / (w - 2), (rate, w)


def test_latency_quantile_within_what_the_client_saw(ops: Ops) -> None:
    w = ops.window_s
    p99 = at_end(ops, f'histogram_quantile(0.99, sum by (le) '
                      f'(rate(mly_request_duration_seconds_bucket{{model="num", route="eval"}}[{w}s])))')
    client_p99 = sorted(ops.latencies_s)[math.ceil(0.99 * len(ops.latencies_s)) - 1]
    bucket = next(b for b in LATENCY_BUCKETS_S if b >= client_p99)  # the server's latency is within the client's
    assert 0 < p99 <= bucket, (p99, client_p99)


def test_cache_hit_ratio(ops: Ops) -> None:
    w = ops.window_s
    ratio = at_end(ops, f'sum(rate(mly_cache_lookups_total{{datastore="tiers", outcome="hit"}}[{w}s])) / '
                        f'sum(rate(mly_cache_lookups_total{{datastore="tiers", outcome=~"hit|miss"}}[{w}s]))')
    assert ratio == pytest.approx(CACHE_REPEATS / (1 + CACHE_REPEATS))
    assert at_end(ops, 'sum(mly_cache_lookups_total{datastore="tiers", outcome="miss"})') == CACHE_ROWS


def live_series(ops: Ops) -> list[dict[str, str]]:
    return ops.prometheus.api("series", **{"match[]": '{__name__=~"mly_.+|up"}'})


def test_alert_rules_evaluate_against_the_live_series(ops: Ops) -> None:
    series = live_series(ops)
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    found = {rule["alert"]: problems(rule["expr"], series, CODE_VALUES) for rule in rules}
    assert {alert: p for alert, p in found.items() if p} == {}
    # Prometheus evaluated each rule (every second) without an error.
    groups = ops.prometheus.api("rules", type="alert")["groups"]
    evaluated = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert sorted(evaluated) == sorted(found)
    for name, rule in evaluated.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def scraped_series(ops: Ops) -> list[dict[str, str]]:
    """The series of one scrape of ``/metrics``, with the labels Prometheus adds to each."""
    with ops.served.client() as client:
        text = client.get("/metrics").text
    target = {"job": "mly", "instance": f"127.0.0.1:{ops.served.port}"}
    return [{"__name__": sample.name, **sample.labels, **target}
            for family in text_string_to_metric_families(text) for sample in family.samples]


def test_dashboard_uses_only_exported_names_and_labels(ops: Ops) -> None:
    series = scraped_series(ops)
    queries = dashboard_queries()
    assert len(queries) >= 15
    found = {f"{title}: {expr}": problems(expr, series, CODE_VALUES) for title, expr in queries}
    assert {query: p for query, p in found.items() if p} == {}
    variables = [v for v in json.loads(DASHBOARD.read_text())["templating"]["list"] if v["type"] == "query"]
    assert {v["name"] for v in variables} == {"instance", "model", "datastore"}
    for variable in variables:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        assert problems(f"count by ({match[2]}) ({match[1]})", series) == [], variable["name"]


def test_dashboard_queries_answer_in_prometheus(ops: Ops) -> None:
    """With every variable at "All", each query runs and shows the traffic (a 1 m rate window)."""
    for title, expr in dashboard_queries():
        concrete = re.sub(r"\$\w+", ".*", expr.replace("$__rate_interval", "1m"))
        result = ops.prometheus.api("query", query=concrete, time=f"{ops.at:.3f}")["result"]
        assert bool(result) != (title in EMPTY_WITHOUT_ERRORS), (title, concrete, result)
