"""Ratios for the Cython hot paths against the obvious alternatives, in one run.

    python bench/bench_native.py            # all sections
    python bench/bench_native.py mru        # only some: keys, encode, mru

Keys: native ``KeyBuilder`` vs the pure-Python reference (tests/reference).
MRU: ``MRUCache`` vs ``pylru.lrucache`` and ``cachetools.LRUCache`` at 100k entries
(get hit, put with eviction, bytes per entry from tracemalloc); the three caches
take turns round by round so outside load on a shared machine hits them alike,
timed in thread CPU time, put + evict amortized over the baselines' dict
rebuilds (see ``bench_mru``).
Encode: a 256-row batch of 8 inputs, native vs a type-check-then-``np.asarray`` version.
Keys and encode timings are the best of several repeats after a warm-up (time.perf_counter).
"""

from __future__ import annotations

import gc
import importlib.metadata
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
    bench_batch_from_json()


def bench_batch_from_json() -> None:
    """A 32-row batch as the request path holds it (parsed JSON lists): keyed straight from the
    lists (``build_plain``, the all-hit path) against encoding into columns and then ``build``."""
    rng = random.Random(2)
    vocabularies = [[f"v{i}-{j}" for j in range(n)] for i, n in enumerate((10, 50, 200, 1000, 2000, 30))]
    rows = 32
    slots: list[Any] = [(keys.SLOT_STRING_VOCAB, v, 0) for v in vocabularies]
    slots += [(keys.SLOT_INT_VOCAB, list(range(5000)), 0), (keys.SLOT_FLOAT, None, 2)]
    codes = [encode.DT_STRING] * 6 + [encode.DT_INT64, encode.DT_FLOAT32]
    lists: list[list[Any]] = [[rng.choice(v + ["oov"]) for _ in range(rows)] for v in vocabularies]
    lists += [[rng.randrange(6000) for _ in range(rows)], [round(rng.uniform(0, 10), 3) for _ in range(rows)]]
    precisions = [0] * 7 + [2]
    native = keys.KeyBuilder(slots)

    def encoded() -> list[str]:
        columns = [encode.encode_column(f"c{k}", code, values, rows, True, p)
                   for k, (code, values, p) in enumerate(zip(codes, lists, precisions))]
        return native.build(columns, rows)

    assert native.build_plain(lists, rows, codes) == encoded()
    t_plain = best_time(lambda: native.build_plain(lists, rows, codes), 2000) / rows
    t_encoded = best_time(encoded, 2000) / rows
    report("keys: build_plain(), 32 JSON rows x 8, per row", t_plain, t_encoded, "encode + build")


# --- MRU ----------------------------------------------------------------------------------


def make_key(i: int) -> str:
    """A 38-byte key for every ``i`` below 10**7.

    Fixed width on purpose: with ``item-{i}`` unpadded, the timed keys (ids from
    100000) were a byte longer on average than the filled ones they evict, so
    the byte-budget cache evicted ~1.01 entries per put and shrank while pylru
    and cachetools evicted exactly one per put and stayed at 100k.
    """
    return f"user-{i % 9973:04d}/item-{i:07d}/[UNK]/{i % 13:02d}/0.125"


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


MRU_KINDS = ("native", "pylru", "cachetools")
MRU_ROUNDS = 7
# 7 x 25k = 175k puts per cache: more than two full cycles of the dict
# compaction pylru and cachetools go through every ~75k puts at 100k entries.
PUTS_PER_ROUND = 25_000


def bench_mru() -> None:
    """Get hits, then puts of new keys into the full caches, the three caches taking turns.

    Each round times one pass per cache, in a rotating order, so a burst of
    outside load on a shared machine lands on all three alike. Time is the
    thread's CPU time, so being descheduled does not count.

    Put + evict is the amortized cost: all puts' time over all puts. pylru and
    cachetools keep their entries in a dict, and a dict that loses one key and
    gains another per put is rebuilt every time its entry array fills up, about
    every 75k puts here (4-5 ms each). The best of short rounds skips those
    rebuilds; the mean over more than two rebuild cycles charges them, as a
    server would pay them. The best round is printed too.

    Every put is of a key no cache holds, so each one evicts; the evictions
    per put and the entries left are printed to show it.
    """
    budget = native_budget_for(ENTRIES)
    caches: dict[str, Any] = {}
    for kind in MRU_KINDS:
        a = Adapter(kind, budget)
        a.fill(0, ENTRIES)
        caches[kind] = a.cache
        assert len(a.cache) == ENTRIES, (kind, len(a.cache))
    evictions_before = caches["native"].stats()["evictions"]
    hit_keys = [make_key(i) for i in random.Random(2).sample(range(ENTRIES), 20_000)]

    def getter(kind: str) -> Callable[[], None]:
        c = caches[kind]
        if kind == "native":

            def get_all() -> None:
                for k in hit_keys:
                    c.get(k, DICT_HASH)
        else:

            def get_all() -> None:
                for k in hit_keys:
                    c[k]

        return get_all

    def put_all(kind: str, fresh: list[tuple[str, bytes]]) -> None:
        c = caches[kind]
        if kind == "native":
            for k, v in fresh:
                c.put(k, v, DICT_HASH, 60_000)
        else:
            for k, v in fresh:
                c[k] = v

    getters = {kind: getter(kind) for kind in MRU_KINDS}
    for fn in getters.values():  # warm-up; also caches each hit key's str hash for all three alike
        fn()
    t_get: dict[str, list[float]] = {kind: [] for kind in MRU_KINDS}
    t_put: dict[str, list[float]] = {kind: [] for kind in MRU_KINDS}
    for r in range(MRU_ROUNDS):
        for kind in MRU_KINDS[r % 3 :] + MRU_KINDS[: r % 3]:
            gc.disable()
            t0 = time.thread_time()
            getters[kind]()
            t_get[kind].append(time.thread_time() - t0)
            gc.enable()
    assert caches["native"].stats()["hits"] == (MRU_ROUNDS + 1) * len(hit_keys)  # all hits
    for r in range(MRU_ROUNDS):
        lo = ENTRIES + r * PUTS_PER_ROUND
        for kind in MRU_KINDS[r % 3 :] + MRU_KINDS[: r % 3]:
            # Own str/bytes objects per cache: a str caches its hash, so shared
            # keys would let the caches timed later skip hashing.
            fresh = [(make_key(i), make_value(i)) for i in range(lo, lo + PUTS_PER_ROUND)]
            gc.disable()
            t0 = time.thread_time()
            put_all(kind, fresh)
            t_put[kind].append(time.thread_time() - t0)
            gc.enable()
            del fresh
    puts = MRU_ROUNDS * PUTS_PER_ROUND
    evicted = {kind: puts - (len(c) - ENTRIES) for kind, c in caches.items()}  # all keys new
    evicted["native"] = caches["native"].stats()["evictions"] - evictions_before
    for kind, c in caches.items():
        assert abs(len(c) - ENTRIES) <= ENTRIES // 200, (kind, len(c))
        assert abs(evicted[kind] - puts) <= puts // 100, (kind, evicted[kind])
    get_mean = {kind: sum(t) / (MRU_ROUNDS * len(hit_keys)) for kind, t in t_get.items()}
    put_mean = {kind: sum(t) / puts for kind, t in t_put.items()}
    put_best = {kind: min(t) / PUTS_PER_ROUND for kind, t in t_put.items()}
    for other in ("pylru", "cachetools"):
        report(f"mru: get hit @100k entries vs {other}", get_mean["native"], get_mean[other], other)
        report(f"mru: put + evict @100k entries vs {other}", put_mean["native"], put_mean[other], other)
    MEM_LINES.append(
        "mru put + evict, best round instead of amortized (skips the dict rebuilds): "
        + ", ".join(f"{k} {put_best[k] * 1e6:.3f} us" for k in MRU_KINDS)
        + f" ({put_best['pylru'] / put_best['native']:.1f}x, {put_best['cachetools'] / put_best['native']:.1f}x)"
    )
    MEM_LINES.append(
        "mru put phase: evictions per put "
        + ", ".join(f"{k} {evicted[k] / puts:.3f}" for k in MRU_KINDS)
        + "; entries after "
        + ", ".join(f"{k} {len(caches[k])}" for k in MRU_KINDS)
    )
    MEM_LINES.append(
        "bytes/entry (tracemalloc, 100k entries, key 38 B, value 36-76 B): "
        + ", ".join(f"{k} {bytes_per_entry(k, budget):.0f}" for k in MRU_KINDS)
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

    # What a single-row miss pays: eight 1-value columns (six strings, an int, a rounded float).
    row = [(name, dt, vals[0], p) for name, dt, vals, p in inputs[:2]] * 3 + [
        (name, dt, vals[0], p) for name, dt, vals, p in (inputs[3], inputs[6])
    ]

    def one_row(fn: Callable[..., np.ndarray]) -> list[np.ndarray]:
        return [fn(name, dt, value, 1, False, p) for name, dt, value, p in row]

    for a, b in zip(one_row(encode.encode_column), one_row(simple_encode)):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()
    t_native = best_time(lambda: one_row(encode.encode_column), 20000)
    t_ref = best_time(lambda: one_row(simple_encode), 5000)
    report("encode: 1 row x 8 inputs (single-row request)", t_native, t_ref, "numpy/Python")


SECTIONS: dict[str, Callable[[], None]] = {"keys": bench_keys, "encode": bench_encode, "mru": bench_mru}


def main(argv: list[str]) -> None:
    chosen = argv or list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    pure = "pure Python" if pylru.__file__.endswith(".py") else "compiled"
    print(
        f"Python {sys.version.split()[0]}, numpy {np.__version__}, pylru {importlib.metadata.version('pylru')}"
        f" ({pure}), cachetools {cachetools.__version__}\n"
    )
    for name in chosen:
        SECTIONS[name]()
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
    main(sys.argv[1:])
