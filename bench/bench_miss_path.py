"""The miss path in process, for two checkouts: CPU per cold single-row request, no HTTP.

Whole-server runs under wrk on a shared 2-core machine swing by tens of percent between
rounds, which hides a change worth a few microseconds per request. This takes the
network, the load generator and the HTTP layer out: one process per checkout loads the
CTR-like model (``ctr_model.py``) through mly's own registry and keeps 64 single-row
evaluations in flight (parse, cache lookup, batcher, TensorFlow, transformer, JSON), every
row new. It reports the process's CPU time per request, and TensorFlow calls per request
(batching changes both). Rounds alternate the checkouts; ratios are taken round by round.

    python bench/bench_miss_path.py --before /path/to/old/checkout [--rounds 6]

The other checkout needs its extensions built in place (``python setup.py build_ext
--inplace`` there). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import spread

CONCURRENCY = 64
CONFIGS = ("no cache", "memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="the other checkout (extensions built in place)")
    parser.add_argument("--after", default=str(ROOT), help="this checkout (default)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=CONCURRENCY * 400, help="timed requests per run")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "BODIES", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        model, bodies, config = args.worker
        print(json.dumps(asyncio.run(measure(model, bodies, config, args.requests))))
        return 0
    if not args.before:
        parser.error("--before is required")
    return compare(args)


def compare(args: argparse.Namespace) -> int:
    from corpus import Corpus, ctr_fields, single_body, write_lines
    from ctr_model import build

    checkouts = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    cpu: dict[tuple[str, str], list[float]] = {(c, k): [] for c in CONFIGS for k in checkouts}
    calls: dict[tuple[str, str], list[float]] = {(c, k): [] for c in CONFIGS for k in checkouts}
    with tempfile.TemporaryDirectory(prefix="mly-bench-") as work:
        model = build(os.path.join(work, "model"))
        bodies = write_lines(os.path.join(work, "bodies.txt"),
                             (single_body(r) for r in Corpus(ctr_fields(), seed=5).rows(args.requests + 8 * CONCURRENCY)))
        print(f"in process, {CONCURRENCY} single-row evaluations in flight, {args.requests} new rows per run, "
              f"{args.rounds} rounds")
        for r in range(args.rounds):
            for name in (list(checkouts) if r % 2 == 0 else list(reversed(checkouts))):
                for config in CONFIGS:
                    env = {**os.environ, "PYTHONPATH": checkouts[name], "TF_CPP_MIN_LOG_LEVEL": "3"}
                    done = subprocess.run(
                        [sys.executable, __file__, "--worker", model, str(bodies), config, "--requests", str(args.requests)],
                        env=env, cwd=work, capture_output=True, text=True, check=True,
                    )
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    cpu[(config, name)].append(result["cpu_us"])
                    calls[(config, name)].append(result["calls_per_request"])
                    print(f"  .. round {r + 1} {name} {config}: {result['cpu_us']:.1f} us CPU/req, "
                          f"{result['calls_per_request']:.3f} TF calls/req", file=sys.stderr, flush=True)
    for config in CONFIGS:
        b, a = cpu[(config, "before")], cpu[(config, "after")]
        print(f"{config:<9} CPU us/request: before {spread(b, '{:.1f}')}, after {spread(a, '{:.1f}')}, after/before "
              f"{spread([x / y for x, y in zip(a, b)], '{:.3f}')}; TF calls/request before "
              f"{spread(calls[(config, 'before')], '{:.3f}')}, after {spread(calls[(config, 'after')], '{:.3f}')}")
    return 0


async def measure(model: str, bodies_path: str, config_name: str, requests: int) -> dict[str, Any]:
    """In the worker: the registry of whichever mly is first on ``sys.path``."""
    import orjson

    from mly.common.request import parse_body
    from mly.config.load import load_config
    from mly.service.registry import ModelRegistry

    entry: dict[str, Any] = {"ID": "ctr", "URL": model, "Inputs": [{"Name": "bid", "Precision": 2}]}
    config: dict[str, Any] = {"Models": [entry]}
    if config_name == "memory":
        entry["DataStore"] = "ctrCache"
        config["Datastores"] = [{"ID": "ctrCache", "Cache": {"SizeMb": 256}, "TimeToLiveMs": 3600000}]
    path = os.path.join(os.getcwd(), f"miss-{os.getpid()}.json")
    Path(path).write_text(json.dumps(config))
    registry = ModelRegistry(load_config(path))
    registry.load_all()
    service = registry.get("ctr")
    bodies = iter(Path(bodies_path).read_bytes().splitlines())

    async def one() -> None:
        result = await service.evaluate(parse_body(next(bodies)))
        orjson.dumps(result.rows if result.batch else result.rows[0], option=orjson.OPT_SERIALIZE_NUMPY)

    for _ in range(8):  # warm-up: the first calls trace and allocate
        await asyncio.gather(*[one() for _ in range(CONCURRENCY)])
    batcher = service.current.batcher
    batches = batcher.counters.batches
    started = time.process_time()
    for _ in range(requests // CONCURRENCY):
        await asyncio.gather(*[one() for _ in range(CONCURRENCY)])
    used = time.process_time() - started
    done = requests // CONCURRENCY * CONCURRENCY
    calls = batcher.counters.batches - batches
    registry.close()
    return {"cpu_us": used / done * 1e6, "calls_per_request": calls / done}


if __name__ == "__main__":
    sys.exit(main())
