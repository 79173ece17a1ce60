"""A real Redis Cluster on loopback: 3 masters + 3 replicas, started and stopped by the tests.

Each node is a ``RedisServer`` child process with ``--cluster-enabled yes``;
``redis-cli --cluster create`` assigns the slots and the replicas. Killing a
master (SIGKILL) makes its replica take over after ``NODE_TIMEOUT_MS`` plus an
election, as in production.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from redis_server import REDIS_BINARY, RedisServer, free_port

from mly.config.schema import Connection, Timeout

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
NODE_TIMEOUT_MS = 1000


class ClusterNode(RedisServer):
    def __init__(self, name: str, workdir: Path) -> None:
        super().__init__(name, workdir)
        # A cluster node also listens on port + 10000 (the cluster bus): both must be free.
        while self.port + 10000 > 65535:
            self.port = free_port()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--repl-diskless-sync-delay", "0",
             "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.paused = False
        self._wait_ready()

    def info(self) -> dict[str, str]:
        with self.client() as r:
            text = r.execute_command("CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def replicating(self) -> bool:
        """A master, or a replica whose link to its master is up (only those can take over)."""
        with self.client() as r:
            info = r.info("replication")
        return info.get("role") == "master" or info.get("master_link_status") == "up"

    def slot_map(self) -> frozenset[tuple[int, int, int]]:
        """(first slot, last slot, master port) as this node sees the cluster."""
        with self.client() as r:
            return frozenset((int(s[0]), int(s[1]), int(s[2][1])) for s in r.execute_command("CLUSTER", "SLOTS"))

    def role(self) -> str:
        with self.client() as r:
            return str(r.execute_command("ROLE")[0].decode())


class RedisCluster:
    def __init__(self, workdir: Path, size: int = 6) -> None:
        self.nodes = [ClusterNode(f"node{i}", workdir / f"node{i}") for i in range(size)]

    def start(self, timeout_s: float = 30.0) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run([REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_ok(timeout_s)
        return self

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every running node says the cluster is ok (every slot served), every replica
        is in sync with its master (a replica that never synced cannot take over) and every
        node sees the same slot map (a restarted node learns the new masters by gossip)."""
        deadline = time.monotonic() + timeout_s
        while not (all(n.info().get("cluster_state") == "ok" and n.replicating() for n in self.nodes if n.running)
                   and len({n.slot_map() for n in self.nodes if n.running}) == 1):
            assert time.monotonic() < deadline, "the Redis Cluster did not become ok"
            time.sleep(0.1)

    def masters(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.running and n.role() == "master"]

    def flush(self) -> None:
        for node in self.masters():
            node.flush()

    def connection(self, timeout_ms: int = 250, *, seeds: int = 1) -> Connection:
        """A ``Cluster: true`` connection listing the first ``seeds`` nodes with their own ports."""
        hostnames = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:seeds])
        return Connection(id="cluster", hostnames=hostnames, kind="redis", cluster=True,
                          timeout=Timeout(connection=timeout_ms, socket=timeout_ms, total=timeout_ms))

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
