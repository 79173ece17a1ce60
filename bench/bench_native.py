"""Ratios for the Cython hot paths against the obvious alternatives, in one run.

    python bench/bench_native.py

Keys: native ``KeyBuilder`` vs the pure-Python reference (tests/reference).
MRU: ``MRUCache`` vs ``pylru.lrucache`` and ``cachetools.LRUCache`` at 100k entries
(get hit, put with eviction, bytes per entry from tracemalloc).
Encode: a 256-row batch of 8 inputs, native vs a type-check-then-``np.asarray`` version.
Timings are the best of several repeats after a warm-up (time.perf_counter).
"""

from __future__ import annotations

import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cachetools
import numpy as np
import pylru

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reference"))

import encode_ref
import keys_ref

from mly._native import encode, keys, mru

ROWS = 256
ENTRIES = 100_000
DICT_HASH = 123456789


def best_time(fn: Callable[[], Any], number: int, repeat: int = 5) -> float:
    """Seconds per call: best of ``repeat`` runs of ``number`` calls, after one warm-up run."""
    for _ in range(max(1, number // 10)):
        fn()
    best = float("inf")
    for _ in range(repeat):
        gc.disable()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - t0)
        gc.enable()
    return best / number


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:9.3f} us"


ROWS_OUT: list[tuple[str, str, str, str]] = []
MEM_LINES: list[str] = []


def report(name: str, native: float, baseline: float, baseline_name: str) -> None:
    ROWS_OUT.append((name, fmt_us(native), f"{fmt_us(baseline)} ({baseline_name})", f"{baseline / native:7.1f}x"))


# --- keys ---------------------------------------------------------------------------------


def bench_keys() -> None:
    rng = random.Random(1)
    words = [f"term-{i}" for i in range(5000)]
    slots: list[Any] = [
        (keys.SLOT_STRING_VOCAB, words, 0),
        (keys.SLOT_STRING_VOCAB, words[:500], 0),
        (keys.SLOT_STRING_VOCAB, words[:50], 0),
        (keys.SLOT_INT_VOCAB, list(range(0, 20000, 3)), 0),
        (keys.SLOT_INT_VOCAB, list(range(100)), 0),
        (keys.SLOT_WILDCARD, None, 0),
        (keys.SLOT_FLOAT, None, 3),
        (keys.SLOT_FLOAT, None, 2),
    ]
    cols = [
        np.array([rng.choice(words + ["oov"]) for _ in range(ROWS)], dtype=object),
        np.array([rng.choice(words[:600]) for _ in range(ROWS)], dtype=object),
        np.array(["term-7"], dtype=object),  # broadcast
        np.array([rng.randrange(20000) for _ in range(ROWS)], dtype=np.int64),
        np.array([rng.randrange(150) for _ in range(ROWS)], dtype=np.int32),
        np.array([f"user/{rng.randrange(10**6)}" for _ in range(ROWS)], dtype=object),
        np.array([rng.uniform(-100, 100) for _ in range(ROWS)], dtype=np.float32),
        np.array([rng.uniform(0, 1) for _ in range(ROWS)], dtype=np.float32),
    ]
    native = keys.KeyBuilder(slots)
    ref = keys_ref.ReferenceKeyBuilder(slots)
    assert native.build(cols, ROWS) == ref.build(cols, ROWS)
    t_native = best_time(lambda: native.build(cols, ROWS), 200) / ROWS
    t_ref = best_time(lambda: ref.build(cols, ROWS), 5) / ROWS
    report("keys: build(), 256 rows x 8 slots, per row", t_native, t_ref, "reference")
    row = [c[0] for c in cols]
    row_py = [v.item() if isinstance(v, np.generic) else v for v in row]
    t_native = best_time(lambda: native.build_row(row_py), 20000)
    t_ref = best_time(lambda: ref.build_row(row_py), 2000)
    report("keys: build_row(), 8 Python scalars", t_native, t_ref, "reference")


# --- MRU ----------------------------------------------------------------------------------


def make_key(i: int) -> str:
    return f"user-{i % 9973}/item-{i}/[UNK]/{i % 13}/0.125"


def make_value(i: int) -> bytes:
    return b'{"score":0.%06d,"label":"class-%d"}' % (i % 999983, i % 17) + b" " * (i % 40)


class Adapter:
    """One calling convention for the three caches."""

    def __init__(self, kind: str, budget: int) -> None:
        self.kind = kind
        if kind == "native":
            self.cache: Any = mru.MRUCache(budget)
        elif kind == "pylru":
            self.cache = pylru.lrucache(ENTRIES)
        else:
            self.cache = cachetools.LRUCache(maxsize=ENTRIES)

    def fill(self, start: int, stop: int) -> None:
        c = self.cache
        if self.kind == "native":
            for i in range(start, stop):
                c.put(make_key(i), make_value(i), DICT_HASH, 60_000)
        else:
            for i in range(start, stop):
                c[make_key(i)] = make_value(i)


def native_budget_for(n: int) -> int:
    """The budget at which exactly ``n`` of these entries fit (measured, not guessed)."""
    probe = mru.MRUCache(1 << 34)
    for i in range(n):
        probe.put(make_key(i), make_value(i), DICT_HASH, 60_000)
    return probe.bytes_used


def bytes_per_entry(kind: str, budget: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    a = Adapter(kind, budget)
    a.fill(0, ENTRIES)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(a.cache) == ENTRIES, (kind, len(a.cache))
    return held / ENTRIES


def bench_mru() -> None:
    budget = native_budget_for(ENTRIES)
    hit_keys = [make_key(i) for i in random.Random(2).sample(range(ENTRIES), 20_000)]
    results: dict[str, tuple[float, float, float]] = {}
    for kind in ("native", "pylru", "cachetools"):
        a = Adapter(kind, budget)
        a.fill(0, ENTRIES)
        c = a.cache
        if kind == "native":

            def get_all(c: Any = c) -> None:
                for k in hit_keys:
                    c.get(k, DICT_HASH)
        else:

            def get_all(c: Any = c) -> None:
                for k in hit_keys:
                    c[k]

        t_get = best_time(get_all, 3) / len(hit_keys)
        # Puts of new keys into a full cache: every one evicts. Keys and values
        # are made before timing; best of 5 chunks, each chunk on a full cache.
        t_put = float("inf")
        for chunk in range(5):
            lo = ENTRIES + chunk * 10_000
            fresh = [(make_key(i), make_value(i)) for i in range(lo, lo + 10_000)]
            gc.disable()
            t0 = time.perf_counter()
            if kind == "native":
                for k, v in fresh:
                    c.put(k, v, DICT_HASH, 60_000)
            else:
                for k, v in fresh:
                    c[k] = v
            t_put = min(t_put, (time.perf_counter() - t0) / len(fresh))
            gc.enable()
        if kind == "native":
            assert c.stats()["evictions"] >= 49_000
        assert len(c) <= ENTRIES
        results[kind] = (t_get, t_put, bytes_per_entry(kind, budget))
    n_get, n_put, _ = results["native"]
    for other in ("pylru", "cachetools"):
        o_get, o_put, _ = results[other]
        report(f"mru: get hit @100k entries vs {other}", n_get, o_get, other)
        report(f"mru: put + evict @100k entries vs {other}", n_put, o_put, other)
    MEM_LINES.append(
        "bytes/entry (tracemalloc, 100k entries, key ~35 B, value ~55 B): "
        + ", ".join(f"{k} {v[2]:.0f}" for k, v in results.items())
    )

# --- encode -------------------------------------------------------------------------------


def simple_encode(name: str, dtype: int, values: Any, n_rows: int, batch: bool, precision: int) -> np.ndarray:
    """The straightforward version: a Python type check per value, then numpy does the rest."""
    out = encode_ref.encode_column(name, dtype, values, n_rows, batch)  # isinstance checks + np.asarray
    if precision > 0:
        scale = float(f"1e{precision}")
        y = out.astype(np.float64) * scale
        r = np.trunc(y)
        r += np.where(np.abs(y - r) >= 0.5, np.sign(y), 0.0)  # half away from zero
        out = (np.copysign(r, y) / scale).astype(out.dtype)
    return out


def bench_encode() -> None:
    rng = random.Random(4)
    inputs = [
        ("s1", encode.DT_STRING, [f"term-{rng.randrange(5000)}" for _ in range(ROWS)], 0),
        ("s2", encode.DT_STRING, [rng.choice("abcdefgh") for _ in range(ROWS)], 0),
        ("s3", encode.DT_STRING, ["broadcast"], 0),
        ("i1", encode.DT_INT64, [rng.randrange(10**9) for _ in range(ROWS)], 0),
        ("i2", encode.DT_INT32, [rng.randrange(1000) for _ in range(ROWS)], 0),
        ("i3", encode.DT_INT64, [7], 0),
        ("f1", encode.DT_FLOAT32, [rng.uniform(-1, 1) for _ in range(ROWS)], 3),
        ("f2", encode.DT_FLOAT64, [rng.uniform(0, 100) for _ in range(ROWS)], 0),
    ]

    def run(fn: Callable[..., np.ndarray]) -> list[np.ndarray]:
        return [fn(name, dt, vals, ROWS, True, p) for name, dt, vals, p in inputs]

    for a, b in zip(run(encode.encode_column), run(simple_encode)):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()
    t_native = best_time(lambda: run(encode.encode_column), 300)
    t_ref = best_time(lambda: run(simple_encode), 30)
    report("encode: 256 rows x 8 inputs (whole batch)", t_native, t_ref, "numpy/Python")


def main() -> None:
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}; best of 5 after warm-up\n")
    bench_keys()
    bench_encode()
    bench_mru()
    widths = [max(len(r[i]) for r in ROWS_OUT) for i in range(4)]
    header = ("benchmark", "native", "baseline", "speed-up")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in ROWS_OUT:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()
    for m in MEM_LINES:
        print(m)


if __name__ == "__main__":
    main()
