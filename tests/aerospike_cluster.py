"""A real Aerospike cluster on loopback: N nodes of the server bundle, replication 2.

Each node is an ``AerospikeServer`` started with the bundle's cluster settings
(same ``AS_CLUSTER_NAME``, ``AS_MESH_SEEDS`` the ports of the nodes started before
it, ``AS_CLUSTER_SIZE`` the members so far). SIGKILL a node and the others take
over its partitions from their replicas.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from aerospike_server import START_TIMEOUT_S, AerospikeServer, tools_dir

from mly.config.schema import Connection, Timeout


class ClusterMember(AerospikeServer):
    def __init__(self, name: str, workdir: Path, cluster_env: dict[str, str]) -> None:
        super().__init__(name, workdir)
        self.cluster_env = cluster_env

    def start(self) -> None:
        env = {**os.environ, "AS_START_TIMEOUT": str(START_TIMEOUT_S), **self.cluster_env}
        result = subprocess.run([str(tools_dir() / "start.sh"), str(self.port), str(self.workdir)],
                                capture_output=True, text=True, env=env, timeout=START_TIMEOUT_S + 30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"aerospike {self.name} did not start:\n{result.stdout}{result.stderr}")
        self.pid = int((self.workdir / "asd.pid").read_text().strip())
        self.paused = False


class AerospikeCluster:
    def __init__(self, workdir: Path, size: int = 3, replication: int = 2) -> None:
        name = f"mly-{uuid.uuid4().hex[:8]}"
        self.nodes: list[ClusterMember] = []
        for i in range(size):
            env = {"AS_CLUSTER_NAME": name, "AS_REPLICATION": str(replication)}
            if i:
                env["AS_MESH_SEEDS"] = ",".join(str(n.port) for n in self.nodes)
                env["AS_CLUSTER_SIZE"] = str(i + 1)
            self.nodes.append(ClusterMember(f"node{i}", workdir / f"node{i}", env))

    def start(self) -> AerospikeCluster:
        for node in self.nodes:
            node.start()
        return self

    def hostnames(self) -> str:
        """Every node as a seed with its own port (``Hostnames``)."""
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def connection(self, timeout_ms: int = 400) -> Connection:
        return Connection(id="aero", hostnames=self.hostnames(), kind="aerospike",
                          timeout=Timeout(connection=1000, socket=timeout_ms, total=timeout_ms))

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
