"""/v1/prometheus and /metrics: text that prometheus_client parses, counts that follow known traffic,
and one scrape that sums every worker under --workers."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import yaml
from live_server import LiveServer
from prometheus_client.parser import text_string_to_metric_families
from serve_process import ServeProcess

from mly.config import parse_config
from mly.errors import ConfigError

ROW = {"sa": "a", "sl": "b", "i1": 10, "fl": 0.25}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(data: dict, name: str, **labels: str) -> float:
    return data.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_follow_known_traffic(server: LiveServer) -> None:
    with server.client() as client:
        before = samples(client.get("/v1/prometheus").text)
        row = {**ROW, "fl": 0.93}
        for _ in range(4):
            assert client.post("/v1/api/model/sli/eval", content=orjson.dumps(row)).status_code == 200
        assert client.post("/v1/api/model/sli/eval", content=b"{").status_code == 400
        client.get("/v1/api/model/sli/meta/config")
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        after = samples(response.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mly_requests_total", model="sli", route="eval", outcome="eval") == 4
    assert delta("mly_requests_total", model="sli", route="eval", outcome="invalid") == 1
    assert delta("mly_request_duration_seconds_count", model="sli", route="eval") == 5
    assert delta("mly_request_duration_seconds_count", model="sli", route="meta/config") == 1
    assert delta("mly_tf_call_duration_seconds_count", model="sli") == 1  # one miss, three hits
    assert delta("mly_model_idletime_count", model="sli") == 5
    assert delta("mly_cache_lookups_total", datastore="mem", tier="memory", outcome="hit") == 3
    assert value(after, "mly_model_dict_hash", model="sli") == float(server.registry.get("sli").current.dict_hash)
    assert value(after, "mly_model_healthy", model="sli") == 1
    buckets = [v for (name, labels), v in after.items()
               if name == "mly_model_idletime_bucket" and dict(labels)["model"] == "sli"]
    assert len(buckets) == 24  # Go's 23 default buckets (ns) + +Inf


def test_idletime_buckets_come_from_the_config() -> None:
    config = parse_config({"Models": [{"ID": "m", "URL": "/m"}],
                           "Metrics": {"Prometheus": {"ModelIdletimeBuckets": [1000, 1e6]}}})
    assert config.metrics is not None and config.metrics.idletime_buckets_ns == (1000.0, 1e6)
    with pytest.raises(ConfigError, match=r"Metrics\.Prometheus\.ModelIdletimeBuckets: must be a list"):
        parse_config({"Models": [{"ID": "m", "URL": "/m"}], "Metrics": {"Prometheus": {"ModelIdletimeBuckets": "x"}}})
    with pytest.raises(ConfigError, match=r"Metrics\.Prometheus\.Buckets: unknown key"):
        parse_config({"Models": [{"ID": "m", "URL": "/m"}], "Metrics": {"Prometheus": {"Buckets": [1]}}})


def test_one_scrape_sums_every_worker(model_dirs: dict[str, str], tmp_path: Path, server: LiveServer) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{"ID": "num", "URL": model_dirs["numeric"], "UseDict": False}]}))
    with ServeProcess(config, "--workers", "2", "--log-level", "warning") as served:
        requests = 40
        for i in range(requests):  # a new connection each: the kernel spreads them over the workers
            with served.client() as client:
                response = client.post("/v1/api/model/num/eval", json={"x1": i, "x2": 0.5})
                assert response.status_code == 200, response.text
        time.sleep(2.5)  # every worker copies its counters to the shared files each second
        totals, per_worker, healthy, names = [], [], set(), set()
        for _ in range(10):
            with served.client() as client:
                data = samples(client.get("/v1/prometheus").text)
            totals.append(value(data, "mly_requests_total", model="num", route="eval", outcome="eval"))
            healthy.add(value(data, "mly_model_healthy", model="num"))
            names.update(name for name, _ in data)
            with served.client() as client:  # gmetric JSON is per worker
                per_worker.append(client.get("/v1/api/metric/operation/numPerf/cumulative/eval").json())
        assert served.stop() == 0
    assert totals == [requests] * 10, totals
    assert healthy == {1.0}
    # The requests were spread over both workers, so the sum really came from both.
    assert min(per_worker) < requests, per_worker
    # Dashboards and alert rules name series: a worker must export the names one process does.
    with server.client() as client:
        one_process = {name for name, _ in samples(client.get("/metrics").text)}
    assert names <= one_process, sorted(names - one_process)
