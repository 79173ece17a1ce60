"""Fault drill of a fleet: two ``mly-fast serve`` on one store cluster, a client with both hosts.

While several threads predict through ``mly.client``, a store node is SIGKILLed, then
server A is SIGKILLed and restarted. Used by ``tests/fleet/test_drills.py`` (which asserts
that nothing fails) and ``bench/fleet_drill.py`` (which prints the timeline).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from serve_process import ServeProcess


@dataclass
class DrillReport:
    started: float
    events: list[tuple[float, str]] = field(default_factory=list)
    """(seconds since start, what happened)."""
    outcomes: list[tuple[float, bool, float, str]] = field(default_factory=list)
    """(seconds since start at completion, ok, latency s, error) per prediction."""
    recoveries: dict[str, float] = field(default_factory=dict)
    """What recovered and how many seconds it took."""

    @property
    def failures(self) -> list[str]:
        return [error for _, ok, _, error in self.outcomes if not ok]

    def seconds(self) -> list[tuple[int, int, int, float]]:
        """Per second of the run: (second, ok predictions, failed ones, p99 latency ms)."""
        buckets: dict[int, list[tuple[bool, float]]] = {}
        for t, ok, latency, _ in self.outcomes:
            buckets.setdefault(int(t), []).append((ok, latency))
        rows = []
        for second in range(max(buckets, default=-1) + 1):
            inside = buckets.get(second, [])
            latencies = sorted(lat for _, lat in inside)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0
            rows.append((second, sum(ok for ok, _ in inside), sum(not ok for ok, _ in inside), p99))
        return rows

    def text(self) -> str:
        seconds = self.seconds()
        lines = [f"{t:6.1f} s  {what}" for t, what in self.events]
        lines.append(" second   ok  failed  p99 ms")
        lines += [f"{s:7d} {ok:4d} {bad:7d} {p99:7.1f}" for s, ok, bad, p99 in seconds]
        first_fault = self.events[0][0] if self.events else 0
        steady = [ok for s, ok, _, _ in seconds[1:] if s + 1 <= first_fault]
        low = min((ok for _, ok, _, _ in seconds[1:-1]), default=0)
        if steady:
            lines.append(f"throughput dip: lowest second {low} ok against a median of {statistics.median(steady):.0f} "
                         "before the first fault")
        lines += [f"recovery: {what} in {seconds:.2f} s" for what, seconds in self.recoveries.items()]
        return "\n".join(lines)


class _Load:
    def __init__(self, predict: Callable[[dict[str, Any]], Any], rows: list[dict[str, Any]], report: DrillReport,
                 threads: int) -> None:
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(predict, rows, report, i), daemon=True)
                         for i in range(threads)]

    def _run(self, predict: Callable[[dict[str, Any]], Any], rows: list[dict[str, Any]], report: DrillReport,
             n: int) -> None:
        i = n
        while not self.stop.is_set():
            row = rows[i % len(rows)]
            i += 7
            began = time.monotonic()
            try:
                predict(row)
                ok, error = True, ""
            except Exception as exc:  # a failed prediction is what the drill counts
                ok, error = False, f"{type(exc).__name__}: {exc}"
            done = time.monotonic()
            report.outcomes.append((done - report.started, ok, done - began, error))

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=60)


def run_drill(
    workdir: Path,
    config: dict[str, Any],
    model: str,
    rows: list[dict[str, Any]],
    kill_store_node: Callable[[], None],
    store_answers: Callable[[], bool],
    *,
    threads: int = 4,
    log: Callable[[str], None] = lambda line: None,
) -> DrillReport:
    """Start two servers with ``config``, load them through one client, kill a store node
    (``kill_store_node``; ``store_answers`` says when the store serves again), then SIGKILL
    and restart server A."""
    from mly.client import CacheScope, Client

    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    a = ServeProcess(path, log_path=workdir / "a.log")
    b = ServeProcess(path, log_path=workdir / "b.log")
    threads_started = [threading.Thread(target=s.start) for s in (a, b)]
    for t in threads_started:
        t.start()
    for t in threads_started:
        t.join()
    report = DrillReport(time.monotonic())

    def event(what: str) -> None:
        report.events.append((time.monotonic() - report.started, what))
        log(f"{report.events[-1][0]:6.1f} s  {what}")

    try:
        hosts = [a.base.removeprefix("http://"), b.base.removeprefix("http://")]
        # No client tiers: every prediction is a request to a server (the drill is about them).
        with Client(model, hosts, max_retries=6, timeout_s=10, cache_scope=CacheScope.NONE) as client, \
                _Load(client.predict, rows, report, threads):
            time.sleep(3)
            event("store node SIGKILLed")
            killed = time.monotonic()
            kill_store_node()
            while not store_answers():
                assert time.monotonic() - killed < 60, "the store never answered again"
                time.sleep(0.05)
            report.recoveries["store serving every key again"] = time.monotonic() - killed
            event("store serving every key again")
            time.sleep(2)
            event("server A SIGKILLed")
            assert a.proc is not None
            a.proc.kill()
            a.proc.wait()
            down = time.monotonic()
            a.start()
            report.recoveries["server A restarted and ready"] = time.monotonic() - down
            event("server A ready again")
            time.sleep(3)
        event("load stopped")
    finally:
        for server in (a, b):
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
    return report


# 6,000 distinct rows: most predictions miss the servers' memory tiers, so the store is used.
ROWS = [{"sa": "abcd"[k % 4], "sl": "abc"[k % 3], "i1": (10, 20, 30, 40)[k % 4], "fl": k / 100}
        for k in range(6000)]


def server_config(model: str, connection: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The keras lookup model (``model_builders``) cached in memory and on the store cluster."""
    return {
        "Models": [{"ID": "sli", "URL": model, "DataStore": "d", "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [{"ID": "store", "Timeout": {"Total": 400}, **connection}],
        "Datastores": [{"ID": "d", "Cache": {"SizeMb": 4}, "Connection": "store", "Namespace": namespace,
                        "Dataset": "drill"}],
    }


def probe(store: Any) -> Callable[[], bool]:
    """Write 100 probe records now; the returned check says when all 100 read back again."""
    from mly.cache.base import StoredRow

    keys = [f"probe{i}" for i in range(100)]
    store.put_many([(k, StoredRow({"v": 1}, 1)) for k in keys])

    def answers() -> bool:
        try:
            return None not in store.get_many(keys)
        except (OSError, TimeoutError):
            return False

    return answers


def aerospike_drill(cluster: Any, model: str, workdir: Path, log: Callable[[str], None] = lambda _: None,
                    namespace: str = "test") -> DrillReport:
    """The drill on an ``aerospike_cluster.AerospikeCluster``: its second node is killed."""
    from mly.cache.aerospike import SyncAerospikeStore, aerospike_client_config

    store = SyncAerospikeStore(aerospike_client_config(cluster.connection()), namespace=namespace,
                               dataset="probe", ttl_ms=600_000)
    try:
        answers = probe(store)
        config = server_config(model, {"Hostnames": cluster.hostnames()}, namespace)
        return run_drill(workdir, config, "sli", ROWS, cluster.nodes[1].kill, answers, log=log)
    finally:
        store.close()


def redis_drill(cluster: Any, model: str, workdir: Path, log: Callable[[str], None] = lambda _: None) -> DrillReport:
    """The drill on a ``redis_cluster.RedisCluster``: a master is killed (and restarted after)."""
    from mly.cache.redis import SyncRedisStore

    cluster.wait_ok()
    connection = cluster.connection(timeout_ms=400, seeds=len(cluster.nodes))
    store = SyncRedisStore.from_connection(connection, namespace="", dataset="probe", ttl_ms=600_000)
    victim = cluster.masters()[0]
    try:
        answers = probe(store)
        with victim.client() as r:
            r.execute_command("WAIT", 1, 1000)  # its replica holds every probe record
        config = server_config(model, {"Kind": "redis", "Cluster": True, "Hostnames": connection.hostnames}, "")
        return run_drill(workdir, config, "sli", ROWS, victim.kill, answers, log=log)
    finally:
        store.close()
        victim.start()  # rejoins as a replica
        cluster.wait_ok()
