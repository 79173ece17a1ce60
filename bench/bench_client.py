"""Client benchmark: a prediction answered by the client's local tier vs the same one over HTTP.

One command, one run, ratios printed, nothing asserted::

    python bench/bench_client.py            # ~1 minute: 3 alternating rounds
    python bench/bench_client.py --quick    # ~25 s smoke run: 1 round, fewer calls

Cases, all through ``mly.client.Client`` against one ``mly-fast serve`` process (pinned
with taskset to the cores the benchmark does not use) serving the bundled example model
(``examples/build_model.py``) twice: ``ctr`` with a memory DataStore, ``ctr_nocache``
without one.

- ``local hit, 1 row``: a warmed client; the row is in its own memory tier (no I/O).
- ``HTTP, server hit, 1 row``: the same predict with ``cache_scope=NONE``: a round trip
  to the server, which answers from its own memory tier (the cheapest possible HTTP).
- ``HTTP, TensorFlow, 1 row``: the same predict of ``ctr_nocache``: round trip + model.
- ``local hit, 32 rows``: a 32-row batch, every row in the local tier.
- ``half hit, 32 rows``: 16 rows local, 16 new rows sent (the server runs TensorFlow).

Each figure is microseconds per predict, the median over rounds with min-max beside it;
the rounds alternate the cases so a disturbance on the shared machine hits them all. The
ratios are taken round by round. Targets (issue #9): a local hit under 10 us and at least
100x faster than the uncached round trip; a 32-row all-hit batch under 50 us.
"""

from __future__ import annotations

import argparse
import gc
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

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import body, free_port, server

from mly.client import CacheScope, Client

ROOT = Path(__file__).resolve().parent.parent


def config(model_dir: str, port: int) -> dict[str, Any]:
    model = {"URL": model_dir, "Inputs": [{"Name": "price", "Precision": 2}]}
    return {
        "Endpoint": {"Port": port},
        "Models": [{"ID": "ctr", "DataStore": "ctrCache", **model}, {"ID": "ctr_nocache", **model}],
        "Datastores": [{"ID": "ctrCache", "Cache": {"SizeMb": 256}, "TimeToLiveMs": 3_600_000}],
    }


def row(k: int) -> dict[str, Any]:
    """Row ``k`` of the server benchmark's bodies: distinct ``k`` are distinct keys."""
    return dict(orjson.loads(body(k)))


def per_call_us(fn: Callable[[], Any], calls: int) -> float:
    gc.disable()
    try:
        started = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        return (time.perf_counter_ns() - started) / calls / 1000
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 round, fewer calls")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server with taskset")
    parser.add_argument("--model", help="an already built example model folder (default: build one)")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    scale = 0.2 if args.quick else 1.0
    n_local, n_http, n_batch, n_half = (int(n * scale) or 1 for n in (100_000, 1000, 20_000, 200))
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and not args.no_pin and shutil.which("taskset") is not None
    client_cpus, server_cpus = (cpus[:1], cpus[1:]) if pin else (None, None)

    with tempfile.TemporaryDirectory(prefix="mly-bench-client-") as work:
        model_dir = args.model or os.path.join(work, "model")
        if not args.model:
            subprocess.run([sys.executable, str(ROOT / "examples/build_model.py"), model_dir], check=True,
                           capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        port = free_port()
        path = Path(work) / "config.yaml"
        path.write_text(json.dumps(config(model_dir, port)))
        exe = shutil.which("mly-fast")
        cli = [exe] if exe else [sys.executable, "-c", "import sys; from mly.cli import main; sys.exit(main())"]
        cmd = [*cli, "serve", str(path), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        print(f"mly client benchmark: model = bundled example 'ctr' (5 inputs); {rounds} alternating round(s); "
              "us per predict, median (min-max) over rounds")
        print(f"pinning: benchmark on cpu {client_cpus}, server on cpu {server_cpus}" if pin
              else f"pinning: none (cpus {cpus})")
        with server(cmd, port, server_cpus, {"TF_CPP_MIN_LOG_LEVEL": "3"}):
            if client_cpus:
                os.sched_setaffinity(0, client_cpus)
            address = f"127.0.0.1:{port}"
            local = Client("ctr", hosts=[address])
            http_hit = Client("ctr", hosts=[address], cache_scope=CacheScope.NONE)
            http_tf = Client("ctr_nocache", hosts=[address])
            one = row(0)
            batch = [row(k) for k in range(1, 33)]
            for _ in range(3):  # warm: local and server tiers, connections
                local.predict(one), local.predict(batch), http_hit.predict(one), http_tf.predict(one)
            assert local.predict(one).status == "cached" and local.predict(batch).status == "cached"
            assert http_hit.predict(one).status == "ok" and http_tf.predict(one).status == "ok"
            fresh = iter(range(10_000, 1 << 40))

            def half_hit() -> None:
                rows = [batch[i] if i % 2 == 0 else row(next(fresh)) for i in range(32)]
                assert local.predict(rows).cached_rows == 16

            cases: dict[str, tuple[Callable[[], Any], int]] = {
                "local hit, 1 row": (lambda: local.predict(one), n_local),
                "HTTP, server hit, 1 row": (lambda: http_hit.predict(one), n_http),
                "HTTP, TensorFlow, 1 row": (lambda: http_tf.predict(one), n_http),
                "local hit, 32 rows": (lambda: local.predict(batch), n_batch),
                "half hit, 32 rows": (half_hit, n_half),
            }
            results: dict[str, list[float]] = {name: [] for name in cases}
            names = list(cases)
            for r in range(rounds):
                for name in names if r % 2 == 0 else reversed(names):
                    fn, calls = cases[name]
                    results[name].append(per_call_us(fn, calls))
                    print(f"  .. round {r + 1} {name:<26} {results[name][-1]:10.2f} us", file=sys.stderr, flush=True)
            for c in (local, http_hit, http_tf):
                c.close()

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):10.2f}  ({min(values):.2f}-{max(values):.2f})"

    print(f"\n{'case':<28}{'us per predict':>14}")
    for name, values in results.items():
        print(f"{name:<28}{spread(values)}")
    hit = results["local hit, 1 row"]
    print("\nratios (round by round, median (min-max)):")
    for name in ("HTTP, server hit, 1 row", "HTTP, TensorFlow, 1 row"):
        ratios = [other / h for other, h in zip(results[name], hit)]
        print(f"  {name} / local hit: {statistics.median(ratios):8.0f}x  ({min(ratios):.0f}-{max(ratios):.0f})")
    print(f"targets: local hit < 10 us: {statistics.median(hit):.2f} us; >= 100x the uncached round trip; "
          f"32-row all-hit < 50 us: {statistics.median(results['local hit, 32 rows']):.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
