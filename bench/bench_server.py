"""End-to-end HTTP benchmark of mly-fast on a real TensorFlow model: cache tiers and batching.

One command, one run, ratios printed, nothing asserted (see bench/README.md)::

    python bench/bench_server.py            # ~7 minutes: 3 alternating rounds, 5 s per case after 1 s warm-up
    python bench/bench_server.py --quick    # ~40 s smoke run: 1 round, 1 s per case, no warm-up
    python bench/bench_server.py --ctr      # C only: the CTR-model cells against the exact-body cache

Every figure is the median over the rounds with the min-max range beside it, and every
ratio is taken round by round (each server against the baseline measured in the same
round), so a reader sees how much of a difference is noise on a shared machine.

A. Cache tiers: a hot keyspace (64 pre-warmed keys, every request a cache hit) against the
   same server with no DataStore (every request runs TensorFlow), and against a bare
   Starlette endpoint that returns the same JSON bytes without doing anything (the ceiling
   of this HTTP stack on this machine). Issue target: hits >= 80% of the ceiling.
B. Micro-batching: all-miss single-row requests (every request a new key; the mly servers
   keep their cache on, so a miss pays the whole miss path: keys, lookup, write-back) at
   concurrency 1, 16 and 64 for adaptive batching (the default), a fixed 500 us wait,
   batching off, and a naive Starlette + TensorFlow app (``apps.naive_app``). Issue
   target at concurrency 64: >= 5x the naive throughput with p99 no worse.

Every server is a separate process, started alone on a free loopback port, pinned with
taskset to the cores the load generator does not use, and stopped before the next one.
The model is the bundled example (``examples/build_model.py``), built into a temp folder.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _commands import mly_cli, uvicorn_cmd
from _load import Loader, Result, Workload, body, free_port, post, server
from apps import BODY_ENV, MODEL_ENV

ROOT = Path(__file__).resolve().parent.parent
HOT_KEYS = 64
EVAL = "/v1/api/model/ctr/eval"
MODES = {  # B: mly batch modes (name -> the model's Batch config; None = the default, adaptive)
    "mly adaptive": None,
    "mly fixed 500us": {"BatchWait": 500_000},
    "mly batching off": {"BatchWait": -1},
}


# --- process commands ----------------------------------------------------------------------

def mly_cmd(workdir: str, model_dir: str, port: int, *, cache: bool, batch: dict[str, int] | None) -> list[str]:
    """``mly-fast serve`` on a temp config (JSON is YAML) for the example model."""
    model: dict[str, Any] = {"ID": "ctr", "URL": model_dir, "Inputs": [{"Name": "price", "Precision": 2}]}
    config: dict[str, Any] = {"Endpoint": {"Port": port}, "Models": [model]}
    if cache:
        model["DataStore"] = "ctrCache"
        config["Datastores"] = [{"ID": "ctrCache", "Cache": {"SizeMb": 256}, "TimeToLiveMs": 3_600_000}]
    if batch is not None:
        model["Batch"] = batch
    path = Path(workdir) / f"mly-{port}.yaml"
    path.write_text(json.dumps(config))
    return [*mly_cli(), "serve", str(path), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


# --- measurements ---------------------------------------------------------------------------

def runner_cost_ms(model_dir: str, seconds: float) -> tuple[float, float]:
    """p50/p99 of one 1-row ``ModelRunner.run`` in this process: TensorFlow's share of a request."""
    import numpy as np

    from mly.model.runner import ModelRunner
    from mly.model.saved_model import load_saved_model
    from mly.model.signature import read_signature

    loaded = load_saved_model(model_dir)
    runner = ModelRunner(loaded, read_signature(loaded))
    feeds = {"country": np.array(["us"], dtype=object), "device": np.array(["mobile"], dtype=object),
             "category": np.array(["fashion"], dtype=object), "hour": np.array([18], dtype=np.int64),
             "price": np.array([19.99], dtype=np.float32)}
    for _ in range(200):
        runner.run(feeds)
    times: list[int] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(times) < 200_000:
        started = time.perf_counter_ns()
        runner.run(feeds)
        times.append(time.perf_counter_ns() - started)
    times.sort()
    return times[len(times) // 2] / 1e6, times[int(len(times) * 0.99)] / 1e6


class Bench:
    """Runs cases, keeps unique-key offsets moving forward and collects results by name."""

    def __init__(self, loader: Loader, seconds: int, warmup: int, started: float) -> None:
        self.loader, self.seconds, self.warmup = loader, seconds, warmup
        self.next_key = HOT_KEYS  # unique keys start past the hot ones
        self.results: dict[tuple[str, int], list[Result]] = {}
        self.started = started

    def _work(self, hot: bool) -> Workload:
        return Workload("hot", HOT_KEYS) if hot else Workload("unique", self.next_key)

    def _advance(self, r: Result, connections: int) -> None:
        # wrk may have sent up to `connections` more than it completed, and re-sends after errors.
        self.next_key += r.requests + r.errors + connections + 1000

    def case(self, name: str, base: str, connections: int, *, hot: bool) -> Result:
        if self.warmup:
            self._advance(self.loader.run(base + EVAL, self._work(hot), connections, self.warmup), connections)
        r = self.loader.run(base + EVAL, self._work(hot), connections, self.seconds)
        self._advance(r, connections)
        self.results.setdefault((name, connections), []).append(r)
        print(f"  .. {time.perf_counter() - self.started:4.0f}s {name:<20} c={connections:<3} {r.rps:>8.0f} req/s  "
              f"p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  errors {r.errors}", file=sys.stderr, flush=True)
        return r


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """median (min-max) of one figure over the rounds: the noise is part of the result."""
    ordered = sorted(values)
    mid = statistics.median(ordered)
    if len(ordered) == 1:
        return fmt.format(mid)
    return f"{fmt.format(mid)} ({fmt.format(ordered[0])}-{fmt.format(ordered[-1])})"


def ratios(a: list[Result], b: list[Result], metric: str) -> list[float]:
    """Per-round ratios: round i of ``a`` against round i of ``b`` (measured minutes apart, not hours)."""
    return [getattr(x, metric) / getattr(y, metric) for x, y in zip(a, b)]


def row(label: str, rs: list[Result], extra: str = "") -> str:
    errors = sum(r.errors for r in rs)
    err = f"  ({errors} errors!)" if errors else ""
    return (f"  {label:<30} {spread([r.rps for r in rs], '{:.0f}'):>19} {spread([r.p50_ms for r in rs]):>17} "
            f"{spread([r.p99_ms for r in rs]):>19}{extra}{err}")


def run_round(bench: Bench, args: argparse.Namespace, work: str, model_dir: str, server_cpus: list[int] | None,
              levels: list[int], reverse: bool) -> bytes:
    """Every server once, alone, in turn; odd rounds go in the reverse order so that drift
    on a shared machine does not always favour the same server."""
    conc_a = args.cache_concurrency
    hit_body = b""

    def mly_modes() -> None:
        nonlocal hit_body
        for mode, batch in MODES.items():
            port = free_port()
            with server(mly_cmd(work, model_dir, port, cache=True, batch=batch), port, server_cpus) as base:
                if batch is None:  # the default server also serves the hot-keyspace case
                    for k in range(HOT_KEYS):
                        post(base + EVAL, body(k))
                    hit_body = post(base + EVAL, body(0))  # a hit's bytes: the bare app's answer
                    bench.case("mly cache hits", base, conc_a, hot=True)
                for c in levels:
                    bench.case(mode, base, c, hot=False)

    def mly_no_cache() -> None:
        port = free_port()
        with server(mly_cmd(work, model_dir, port, cache=False, batch=None), port, server_cpus) as base:
            bench.case("mly no cache", base, conc_a, hot=True)

    def naive() -> None:
        port = free_port()
        with server(uvicorn_cmd("naive_app", port), port, server_cpus, {MODEL_ENV: model_dir}) as base:
            for c in levels:
                bench.case("naive", base, c, hot=False)

    def bare() -> None:
        port = free_port()
        with server(uvicorn_cmd("bare_app", port), port, server_cpus, {BODY_ENV: hit_body.decode()}) as base:
            bench.case("bare", base, conc_a, hot=True)
            if conc_a != 1:
                bench.case("bare", base, 1, hot=True)

    # The bare app answers mly's own hit bytes, so mly's default server runs before it.
    steps = [mly_modes, mly_no_cache, naive, bare] if not reverse else [naive, mly_no_cache, mly_modes, bare]
    for step in steps:
        step()
    return hit_body


def ctr_cells(args: argparse.Namespace) -> int:
    """C. The hot-path cells on the CTR-like model (``bench/ctr_model.py``), run by ``bench/run.py``
    so the servers, bodies, pinning and report are the published benchmark's own:

    - hot single rows (1,000 distinct bodies) and hot 32-row batches at concurrency 16: mly's
      memory tier with the response memo (``mly memory``), the memory tier alone (``mly
      per-row``), and the exact-body dict cache in front of the naive server;
    - cold single rows at concurrency 64 without any cache: ``mly no cache`` against ``naive``.
    """
    import run

    common = ["--rounds", str(args.rounds), "--seconds", str(args.seconds), "--warmup", str(args.warmup),
              "--no-triton", "--no-locust", "--no-claim", *(["--no-pin"] if args.no_pin else [])]
    status = run.main([*common, "--servers", "mly memory,mly per-row,exact-body", "--workloads", "hot,batch32",
                       "--concurrency", "16"])
    return status or run.main([*common, "--servers", "mly no cache,naive", "--workloads", "cold",
                               "--concurrency", "64"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per case (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per case (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; figures are median (min-max)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1 s per case, no warm-up")
    parser.add_argument("--concurrency", default="1,16,64", help="B: connections per case (default 1,16,64)")
    parser.add_argument("--cache-concurrency", type=int, default=64, help="A: connections (default 64)")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto",
                        help="load generator (auto: wrk if installed)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and server with taskset")
    parser.add_argument("--model", help="an already built example model folder (default: build one)")
    parser.add_argument("--ctr", action="store_true",
                        help="C instead of A and B: the CTR-model cells against the exact-body cache (bench/run.py)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.rounds = 1, 0, 1
    if args.ctr:
        return ctr_cells(args)
    levels = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and not args.no_pin and shutil.which("taskset") is not None
    client_cpus, server_cpus = (cpus[:1], cpus[1:]) if pin else (None, None)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="mly-bench-") as work:
        loader = Loader(args.client, client_cpus, work)
        model_dir = args.model or os.path.join(work, "model")
        if not args.model:
            subprocess.run([sys.executable, str(ROOT / "examples/build_model.py"), model_dir], check=True,
                           capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        print(f"mly server benchmark: model = bundled example 'ctr' (examples/build_model.py, 5 inputs, 1 row "
              f"per request); {args.rounds} alternating round(s), {args.seconds} s per case after "
              f"{args.warmup} s warm-up; figures are median (min-max) over the rounds")
        print(f"load generator: {loader.kind} (closed loop, keep-alive, 1 client thread), 127.0.0.1 only")
        if pin:
            print(f"pinning: client on cpu {client_cpus}, each server on cpu {server_cpus} (taskset)")
        else:
            print(f"pinning: none (cpus {cpus}); client and server share every core")
        if len(cpus) <= 2:
            print(f"NOTE: {len(cpus)} cores: client and server compete for the machine; absolute numbers are "
                  "low, compare ratios")
        if loader.kind == "asyncio":
            print("NOTE: Python client (wrk not found): at the highest rates the client itself may be the limit")

        if server_cpus:
            os.sched_setaffinity(0, server_cpus)  # measure the runner where servers run
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        tf_p50, tf_p99 = runner_cost_ms(model_dir, min(2.0, float(args.seconds)))
        os.sched_setaffinity(0, cpus)
        bench = Bench(loader, args.seconds, args.warmup, started)
        conc_a = args.cache_concurrency
        for i in range(args.rounds):
            print(f"  .. round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
            hit_body = run_round(bench, args, work, model_dir, server_cpus, levels, reverse=i % 2 == 1)

    res = bench.results
    head = f"  {'':<30} {'req/s':>19} {'p50 ms':>17} {'p99 ms':>19}"
    hits, nocache, bare = res[("mly cache hits", conc_a)], res[("mly no cache", conc_a)], res[("bare", conc_a)]
    print(f"\nA. Cache tiers: hot keyspace, {HOT_KEYS} keys all pre-warmed, concurrency {conc_a}")
    print(head)
    print(row("bare Starlette (HTTP ceiling)", bare, f"   ({len(hit_body)}-byte body, mly's hit bytes)"))
    print(row("mly cache hits", hits))
    print(row("mly no cache (every req in TF)", nocache))
    print(f"  hits / ceiling   : {spread(ratios(hits, bare, 'rps'))}x req/s  (target >= 0.80)   "
          f"p99 {spread(ratios(hits, bare, 'p99_ms'))}x")
    print(f"  hits / no-cache  : {spread(ratios(hits, nocache, 'rps'))}x req/s   "
          f"p99 {spread(ratios(hits, nocache, 'p99_ms'))}x")

    print("\nB. Micro-batching: all-miss single-row requests (every request a new key)")
    print(f"  {'conc  case':<30} {'req/s':>19} {'p50 ms':>17} {'p99 ms':>19}   vs naive: req/s  p99")
    for c in levels:
        naive = res[("naive", c)]
        for name in ("naive", *MODES):
            r = res[(name, c)]
            ratio = f"   {spread(ratios(r, naive, 'rps'))}x  {spread(ratios(r, naive, 'p99_ms'))}x"
            print(row(f"{c:>4}  {name}", r, ratio if name != "naive" else ""))
    top = max(levels)
    for name in MODES:
        r, naive = res[(name, top)], res[("naive", top)]
        target = "  (target >= 5x, p99 <= 1.00x)" if top >= 64 else ""
        print(f"  at concurrency {top}: {name:<17} {spread(ratios(r, naive, 'rps'))}x naive req/s, "
              f"p99 {spread(ratios(r, naive, 'p99_ms'))}x naive{target}")

    if 1 in levels:
        floor = statistics.median(r.p50_ms for r in res[("bare", 1)])
        print("\nPer-request cost outside TensorFlow (concurrency 1, all-miss, median p50 latency minus the runner):")
        print(f"  ModelRunner.run, 1 row, in-process   : p50 {tf_p50:.3f} ms  p99 {tf_p99:.3f} ms")
        print(f"  HTTP round trip floor (bare, c=1)    : p50 {floor:.3f} ms (client + loopback + uvicorn + Starlette)")
        for name in ("naive", *MODES):
            p50 = statistics.median(r.p50_ms for r in res[(name, 1)])
            print(f"  {name:<17} p50 {p50:.3f} ms -> outside TF {p50 - tf_p50:.3f} ms, "
                  f"of which above the HTTP floor {p50 - tf_p50 - floor:.3f} ms")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
