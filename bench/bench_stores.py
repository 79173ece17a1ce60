"""Cost of a remote cache tier per request: cache hits served from memory, Redis L1 or Aerospike L1.

One command, one run, figures printed, nothing asserted (see bench/README.md)::

    python bench/bench_stores.py            # ~1.5 minutes: 3 rounds x 3 servers x c=16,64, 3 s per case
    python bench/bench_stores.py --quick    # smoke run: 1 round, 1 s per case
    python bench/bench_stores.py --stores memory,aerospike   # only these tiers
    python bench/bench_stores.py --stores memory,redis,redis-cluster   # adds a 3+3 Redis Cluster
    python bench/bench_stores.py --stores memory,aerospike,aerospike-cluster   # adds 3 Aerospike nodes

A hot keyspace of 64 keys, all pre-warmed, so every request is a cache hit, against the
same model served three ways: the in-process memory tier only; Redis as L1 with no
memory tier (every request is a Redis round trip); Aerospike as L1 with no memory tier
(every request is an Aerospike round trip through the client's thread pool). The mly
server is pinned with taskset beside the load generator; the store processes (a
redis-server, a single-node in-memory Aerospike) run unpinned on the same machine, so on
a small machine they compete with both. Before measuring, the 64 entries are checked
to be in the store, so a request never reaches TensorFlow.

Needs redis-server on PATH and the Aerospike server bundle (``shared/tools/aerospike``
beside the repository, or ``MLY_AEROSPIKE_TOOLS``); a store that is missing is skipped
with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))  # the real-server helpers the tests use
from _load import Loader, Result, Workload, batch_body, body, free_port, post, server

HOT_KEYS = 64
EVAL = "/v1/api/model/ctr/eval"
DATASET = "bench"


def mly_cmd(workdir: str, model_dir: str, port: int, kind: str, store: Any) -> list[str]:
    """``mly-fast serve`` for the example model with one cache tier: memory, redis or aerospike."""
    datastore: dict[str, Any] = {"ID": "ctrCache", "TimeToLiveMs": 3_600_000}
    config: dict[str, Any] = {
        "Endpoint": {"Port": port},
        "Models": [{"ID": "ctr", "URL": model_dir, "DataStore": "ctrCache",
                    "Inputs": [{"Name": "price", "Precision": 2}]}],
        "Datastores": [datastore],
    }
    if kind == "memory":
        datastore["Cache"] = {"SizeMb": 256}
    elif kind == "aerospike-cluster":  # 3 nodes, replication 2, every node a seed with its own port
        config["Connections"] = [{"ID": "l1", "Kind": "aerospike", "Hostnames": store.hostnames()}]
        datastore.update({"Connection": "l1", "Namespace": "test", "Dataset": DATASET})
    elif kind == "redis-cluster":  # every master a seed, each with its own port
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in store.masters())
        config["Connections"] = [{"ID": "l1", "Kind": "redis", "Cluster": True, "Hostnames": seeds}]
        datastore.update({"Connection": "l1", "Namespace": "mly", "Dataset": DATASET})
    else:
        config["Connections"] = [{"ID": "l1", "Kind": kind, "Hostnames": "127.0.0.1", "Port": store.port}]
        datastore.update({"Connection": "l1", "Namespace": "test" if kind == "aerospike" else "mly",
                          "Dataset": DATASET})
    path = Path(workdir) / f"mly-{port}.yaml"
    path.write_text(json.dumps(config))
    exe = shutil.which("mly-fast")
    cli = [exe] if exe else [sys.executable, "-c", "import sys; from mly.cli import main; sys.exit(main())"]
    return [*cli, "serve", str(path), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


def stored_entries(kind: str, store: Any) -> int:
    if kind == "memory":
        return HOT_KEYS
    if kind == "redis":
        with store.client() as r:
            return int(r.dbsize())
    if kind == "redis-cluster":
        total = 0
        for node in store.masters():
            with node.client() as r:
                total += int(r.dbsize())
        return total
    if kind == "aerospike-cluster":
        store = store.nodes[0]  # a client seeded there sees the whole cluster
    with store.connected() as client:
        return sum(1 for _ in client.query("test", DATASET).results())


def start_stores(workdir: Path, kinds: list[str]) -> dict[str, Any]:
    """The tiers named in ``kinds`` that can run here; a store that is missing is skipped with a note."""
    stores: dict[str, Any] = {"memory": None} if "memory" in kinds else {}
    if "redis" in kinds and not shutil.which("redis-server"):
        print("NOTE: redis-server not found: the Redis row is skipped")
    elif "redis" in kinds:
        from redis_server import RedisServer

        redis = RedisServer("bench", workdir)
        redis.start()
        stores["redis"] = redis
    if "redis-cluster" in kinds and shutil.which("redis-server"):
        from redis_cluster import RedisCluster

        cluster = RedisCluster(workdir / "redis-cluster")  # 3 masters + 3 replicas on loopback
        cluster.start()
        stores["redis-cluster"] = cluster
    import aerospike_server

    if "aerospike" in kinds and not aerospike_server.tools_available():
        print(f"NOTE: no Aerospike bundle at {aerospike_server.tools_dir()}: the Aerospike row is skipped")
    elif "aerospike" in kinds:
        aero = aerospike_server.AerospikeServer("bench", workdir / "aerospike")
        aero.start()
        stores["aerospike"] = aero
    if "aerospike-cluster" in kinds and aerospike_server.tools_available():
        from aerospike_cluster import AerospikeCluster

        stores["aerospike-cluster"] = AerospikeCluster(workdir / "aerospike-cluster").start()
    return stores


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    ordered = sorted(values)
    if len(ordered) == 1:
        return fmt.format(ordered[0])
    return f"{fmt.format(statistics.median(ordered))} ({fmt.format(ordered[0])}-{fmt.format(ordered[-1])})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="measured seconds per case (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per case (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are median (min-max)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1 s per case, no warm-up")
    parser.add_argument("--concurrency", default="16,64", help="connections per case (default 16,64)")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and server with taskset")
    parser.add_argument("--model", help="an already built example model folder (default: build one)")
    parser.add_argument("--batch", type=int, default=0, help="also hot N-row batches (64 distinct, every row stored)")
    parser.add_argument("--stores", default="memory,redis,aerospike",
                        help="tiers to measure, comma-separated (default memory,redis,aerospike)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.rounds = 1, 0, 1
    levels = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and not args.no_pin and shutil.which("taskset") is not None
    client_cpus, server_cpus = (cpus[:1], cpus[1:]) if pin else (None, None)
    results: dict[tuple[str, int], list[Result]] = {}

    with tempfile.TemporaryDirectory(prefix="mly-bench-stores-") as work:
        loader = Loader(args.client, client_cpus, work)
        batches = [batch_body(range(HOT_KEYS + b * args.batch, HOT_KEYS + (b + 1) * args.batch))
                   for b in range(HOT_KEYS)] if args.batch else []
        batch_file = os.path.join(work, "batches.txt")
        Path(batch_file).write_bytes(b"\n".join(batches) + b"\n")
        model_dir = args.model or os.path.join(work, "model")
        if not args.model:
            subprocess.run([sys.executable, str(ROOT / "examples/build_model.py"), model_dir], check=True,
                           capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
        unknown = sorted(set(kinds) - {"memory", "redis", "redis-cluster", "aerospike", "aerospike-cluster"})
        if unknown:
            parser.error(f"--stores: unknown tier(s) {', '.join(unknown)} (memory, redis, redis-cluster, aerospike, aerospike-cluster)")
        stores = start_stores(Path(work), kinds)
        try:
            print(f"mly cache-tier benchmark: hot keyspace of {HOT_KEYS} pre-warmed keys (every request a hit), "
                  f"{args.rounds} round(s), {args.seconds} s per case after {args.warmup} s warm-up; "
                  f"load generator {loader.kind}; "
                  + (f"client on cpu {client_cpus}, mly on cpu {server_cpus}, stores unpinned" if pin
                     else "no pinning"))
            for i in range(args.rounds):
                order = list(stores) if i % 2 == 0 else list(reversed(stores))
                for kind in order:
                    store = stores[kind]
                    port = free_port()
                    with server(mly_cmd(work, model_dir, port, kind, store), port, server_cpus) as base:
                        for k in range(HOT_KEYS):
                            post(base + EVAL, body(k))
                        for data in batches:
                            post(base + EVAL, data)
                        wanted = HOT_KEYS * (1 + args.batch) if kind != "memory" else HOT_KEYS
                        deadline = time.monotonic() + 30
                        while stored_entries(kind, store) < wanted:  # write-behind lands
                            if time.monotonic() > deadline:
                                raise RuntimeError(f"{kind}: the {wanted} entries never reached the store")
                            time.sleep(0.05)
                        for c in levels:
                            if args.warmup:
                                loader.run(base + EVAL, Workload("hot", HOT_KEYS), c, args.warmup)
                            r = loader.run(base + EVAL, Workload("hot", HOT_KEYS), c, args.seconds)
                            results.setdefault((kind, c), []).append(r)
                            print(f"  .. round {i + 1} {kind:<9} c={c:<3} {r.rps:>7.0f} req/s  p50 {r.p50_ms:.2f} ms"
                                  f"  p99 {r.p99_ms:.2f} ms  errors {r.errors}", file=sys.stderr, flush=True)
                            if args.batch:
                                r = loader.run(base + EVAL, Workload("file", 0, batch_file), c, args.seconds)
                                results.setdefault((f"{kind} x{args.batch}", c), []).append(r)
                                print(f"  .. round {i + 1} {kind:<9} c={c:<3} x{args.batch} {r.rps:>7.0f} req/s  "
                                      f"p99 {r.p99_ms:.2f} ms  errors {r.errors}", file=sys.stderr, flush=True)
        finally:
            for store in stores.values():
                stop: Callable[[], None] | None = getattr(store, "kill", None) or getattr(store, "stop", None)
                if stop is not None:
                    stop()

    print(f"\nCache hits by tier (memory tier off for Redis/Aerospike), median (min-max) over {args.rounds} round(s)")
    print(f"  {'tier':<40} {'c':>3} {'req/s':>20} {'p50 ms':>18} {'p99 ms':>19} {'req/s vs memory':>18}")
    shapes = ["", f" x{args.batch}"] if args.batch else [""]
    cases = [(c, shape) for c in levels for shape in shapes]
    for c, shape in cases:
        base_rs = results.get((f"memory{shape}", c), [])
        for kind in stores:
            rs = results.get((f"{kind}{shape}", c), [])
            if not rs:
                continue
            label = {"memory": "memory (in-process MRU)", "redis": "Redis L1", "aerospike": "Aerospike L1",
                     "redis-cluster": "Redis Cluster L1 (3+3)", "aerospike-cluster": "Aerospike cluster L1 (3, r=2)"}[kind]
            label += f", {args.batch}-row batches" if shape else ""
            rel = [r.rps / b.rps for r, b in zip(rs, base_rs)] if base_rs else []
            errors = sum(r.errors for r in rs)
            print(f"  {label:<40} {c:>3} {spread([r.rps for r in rs], '{:.0f}'):>20} "
                  f"{spread([r.p50_ms for r in rs]):>18} {spread([r.p99_ms for r in rs]):>19} "
                  f"{spread(rel) + 'x' if rel else '':>18}{f'  ({errors} errors!)' if errors else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
