"""Two checkouts of mly, same machine, same run: cache-hit and all-miss throughput, alternating.

For "this change must not slow the hot path by more than N%": build the other checkout's
extensions in place (``python setup.py build_ext --inplace`` there), then::

    python bench/bench_checkouts.py --before /path/to/old/checkout [--after .] [--rounds 6]

Each round starts each checkout's ``mly-fast serve`` alone (pinned to one core, wrk on the other),
on the bundled example model with the memory cache, and measures hot cache hits (64 keys) and
all-miss single rows at concurrency 64. Figures are median (min-max) over the rounds; ratios are
taken round by round. Nothing is asserted. ``--batch N`` adds hot cache hits of N-row batches
(64 distinct batches, every row cached).

``--ctr`` measures the miss path on the published benchmark's model instead (``ctr_model.py``,
8 inputs, 5% out-of-vocabulary values): cold single rows at concurrency 64, never repeated within
a server's run, served with no cache and with the memory tier; it reports req/s and the server's
CPU per request.

``--flight`` times, in this process, what single-flight costs a cold single-row miss: one
``claim`` of a fresh key and its ``resolve``, with each checkout's ``mly/service/singleflight.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _commands import children, mly_serve_cmd, tree_cpu_seconds
from _load import Loader, Workload, batch_body, body, free_port, post, server
from _report import spread as report_spread

ROOT = Path(__file__).resolve().parent.parent
EVAL = "/v1/api/model/ctr/eval"


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """median (min-max), as the other benchmarks print it; whole numbers unless told."""
    return report_spread(values, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the other checkout (extensions built in place)")
    parser.add_argument("--after", default=str(ROOT), help="this checkout (default)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--ctr", action="store_true", help="cold rows on the benchmark model (see above)")
    parser.add_argument("--flight", action="store_true", help="single-flight cost of one miss, in process")
    parser.add_argument("--batch", type=int, default=0, help="also hot N-row batches (e.g. 32)")
    args = parser.parse_args(argv)
    checkouts = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    if args.ctr:
        return ctr_misses(args, checkouts)
    if args.flight:
        return asyncio.run(flight_claims(args, checkouts))
    cpus = sorted(os.sched_getaffinity(0))
    client_cpus, server_cpus = (cpus[:1], cpus[1:]) if len(cpus) >= 2 else (None, None)
    hits: dict[str, list[float]] = {k: [] for k in checkouts}
    misses: dict[str, list[float]] = {k: [] for k in checkouts}
    batches: dict[str, list[float]] = {k: [] for k in checkouts}
    with tempfile.TemporaryDirectory(prefix="mly-bench-") as work:
        batch_bodies = [batch_body(range(b * args.batch, (b + 1) * args.batch)) for b in range(64)]
        batch_file = os.path.join(work, "batches.txt")
        Path(batch_file).write_bytes(b"\n".join(batch_bodies) + b"\n")
        model = os.path.join(work, "model")
        subprocess.run([sys.executable, str(ROOT / "examples/build_model.py"), model], check=True,
                       capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        loader = Loader("auto", client_cpus, work)
        offset = 1000
        print(f"load generator: {loader.kind}; client on {client_cpus}, servers on {server_cpus}; "
              f"{args.rounds} rounds x {args.seconds} s per case, c={args.connections}")
        for r in range(args.rounds):
            for name in (list(checkouts) if r % 2 == 0 else list(reversed(checkouts))):
                port = free_port()
                config = {"Models": [{"ID": "ctr", "URL": model, "DataStore": "c",
                          "Inputs": [{"Name": "price", "Precision": 2}]}],
                          "Datastores": [{"ID": "c", "Cache": {"SizeMb": 64}, "TimeToLiveMs": 3600000}]}
                env = {"PYTHONPATH": checkouts[name], "TF_CPP_MIN_LOG_LEVEL": "3"}
                with server(mly_serve_cmd(config, work, port), port, server_cpus, env) as base:
                    url = base + EVAL
                    for k in range(64):
                        post(url, body(k))
                    loader.run(url, Workload("hot", 64), args.connections, 1)
                    hot = loader.run(url, Workload("hot", 64), args.connections, args.seconds)
                    if args.batch:
                        for data in batch_bodies:
                            post(url, data)
                        loader.run(url, Workload("file", 0, batch_file), args.connections, 1)
                        batched = loader.run(url, Workload("file", 0, batch_file), args.connections, args.seconds)
                        batches[name].append(batched.rps)
                    cold = loader.run(url, Workload("unique", offset), args.connections, args.seconds)
                    offset += cold.requests + cold.errors + 10_000
                hits[name].append(hot.rps)
                misses[name].append(cold.rps)
                print(f"  .. round {r + 1} {name}: hits {hot.rps:.0f} req/s, all-miss {cold.rps:.0f} req/s, "
                      f"errors {hot.errors + cold.errors}", file=sys.stderr, flush=True)
    cases = [("cache hits", hits), ("all-miss", misses)]
    if args.batch:
        cases.insert(1, (f"hits x{args.batch}", batches))
    for label, data in cases:
        ratio = [a / b for a, b in zip(data["after"], data["before"])]
        print(f"{label:<10} before {spread(data['before'])} req/s, after {spread(data['after'])} req/s, "
              f"after/before {spread(ratio, '{:.3f}')}")
    return 0


def ctr_misses(args: argparse.Namespace, checkouts: dict[str, str]) -> int:
    """Cold single rows on the benchmark model, no cache and memory tier, both checkouts alternating."""
    from corpus import Corpus, ctr_fields, single_body, write_lines
    from ctr_model import build, mly_model_config

    cpus = sorted(os.sched_getaffinity(0))
    client_cpus, server_cpus = (cpus[:1], cpus[1:]) if len(cpus) >= 2 else (None, None)
    configs = {
        "no cache": lambda m: {"Models": [mly_model_config(m, cache=False)]},
        "memory": lambda m: {"Models": [mly_model_config(m, cache=True)],
                             "Datastores": [{"ID": "ctrCache", "Cache": {"SizeMb": 256}, "TimeToLiveMs": 3600000}]},
    }
    rps: dict[tuple[str, str], list[float]] = {(c, k): [] for c in configs for k in checkouts}
    cpu: dict[tuple[str, str], list[float]] = {(c, k): [] for c in configs for k in checkouts}
    with tempfile.TemporaryDirectory(prefix="mly-bench-") as work:
        model = build(os.path.join(work, "model"))
        rows = 20_000 * args.seconds  # more than one server answers in a run: no row repeats
        cold = write_lines(os.path.join(work, "cold.txt"),
                           (single_body(r) for r in Corpus(ctr_fields(), seed=7).rows(rows + 40_000)))
        loader = Loader("wrk", client_cpus, work)
        print(f"ctr model, cold single rows: {args.rounds} rounds x {args.seconds} s per case, c={args.connections}")
        for r in range(args.rounds):
            for name in (list(checkouts) if r % 2 == 0 else list(reversed(checkouts))):
                for label, make in configs.items():
                    port = free_port()
                    env = {"PYTHONPATH": checkouts[name], "TF_CPP_MIN_LOG_LEVEL": "3"}
                    before = children(os.getpid())
                    with server(mly_serve_cmd(make(model), work, port), port, server_cpus, env) as base:
                        roots = sorted(children(os.getpid()) - before)
                        url = base + EVAL
                        loader.run(url, Workload("file", rows, str(cold)), args.connections, 1)  # warm-up rows
                        start = tree_cpu_seconds(roots)
                        res = loader.run(url, Workload("file", 0, str(cold)), args.connections, args.seconds)
                        used = tree_cpu_seconds(roots) - start
                    rps[(label, name)].append(res.rps)
                    cpu[(label, name)].append(used / max(res.requests, 1) * 1e6)
                    print(f"  .. round {r + 1} {name} {label}: {res.rps:.0f} req/s, "
                          f"{cpu[(label, name)][-1]:.0f} us CPU/req, errors {res.errors}", file=sys.stderr, flush=True)
    for label in configs:
        b, a = rps[(label, "before")], rps[(label, "after")]
        ratio = [x / y for x, y in zip(a, b)]
        print(f"{label:<9} before {spread(b)} req/s ({spread(cpu[(label, 'before')])} us CPU/req), "
              f"after {spread(a)} req/s ({spread(cpu[(label, 'after')])} us CPU/req), after/before "
              f"{spread(ratio, '{:.3f}')}")
    return 0


def _load_module(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


async def flight_claims(args: argparse.Namespace, checkouts: dict[str, str]) -> int:
    """ns per claim + resolve of a key nobody else is waiting for (every cold single-row miss)."""
    modules = {name: _load_module(os.path.join(root, "mly/service/singleflight.py"), f"singleflight_{name}")
               for name, root in checkouts.items()}
    n = 200_000
    times: dict[str, list[float]] = {k: [] for k in checkouts}
    for r in range(args.rounds):
        for name in (list(checkouts) if r % 2 == 0 else list(reversed(checkouts))):
            flight = modules[name].SingleFlight()
            keys = [f"key{i}" for i in range(n)]
            started = time.perf_counter()
            for key in keys:
                claim = flight.claim([key], [0])
                flight.resolve(claim.keys, [b"{}"])
            times[name].append((time.perf_counter() - started) / n * 1e9)
    ratio = [a / b for a, b in zip(times["after"], times["before"])]
    print(f"claim+resolve of one fresh key: before {spread(times['before'])} ns, after {spread(times['after'])} ns, "
          f"after/before {spread(ratio, '{:.3f}')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
