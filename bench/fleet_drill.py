"""Fault drill of a fleet, printed as a timeline: two servers on one store cluster, one client.

    python bench/fleet_drill.py --store aerospike   # 3 nodes, replication 2 (Aerospike server bundle)
    python bench/fleet_drill.py --store redis       # 3 masters + 3 replicas (redis-server)

Four client threads predict through ``mly.client`` with both servers in its host list (no
client tiers: every prediction is a request); a store node is SIGKILLed, then server A is
SIGKILLed and restarted. Prints when each fault happened, predictions and failures per
second with their p99, the throughput dip and how long each recovery took. The same drill
runs in ``tests/fleet/test_drills.py``, which asserts that no prediction fails. The
Aerospike bundle is looked for as the tests do (``MLY_AEROSPIKE_TOOLS``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["aerospike", "redis"], default="aerospike")
    args = parser.parse_args(argv)

    from fleet_drill import aerospike_drill, redis_drill
    from model_builders import build_keras_lookup_model

    with tempfile.TemporaryDirectory(prefix="mly-drill-") as tmp:
        work = Path(tmp)
        model = build_keras_lookup_model(str(work / "model"))
        if args.store == "aerospike":
            from aerospike_cluster import AerospikeCluster

            cluster = AerospikeCluster(work / "aerospike").start()
            try:
                report = aerospike_drill(cluster, model, work, log=print)
            finally:
                cluster.stop()
        else:
            from redis_cluster import RedisCluster

            cluster = RedisCluster(work / "redis").start()  # type: ignore[assignment]
            try:
                report = redis_drill(cluster, model, work, log=print)
            finally:
                cluster.stop()
    print(report.text())
    print(f"failed predictions: {len(report.failures)} of {len(report.outcomes)}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
