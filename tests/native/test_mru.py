"""The local cache tier: TTL, negative entries, stale hashes, LRU eviction, threads, real memory."""

from __future__ import annotations

import gc
import os
import pickle
import random
import sys
import threading
import time
import tracemalloc

import pytest

from mly._native import mru
from mly._native.mru import KNOWN_MISSING, MRUCache

H = 7  # a dictionary hash


def filled(max_bytes: int, n: int, value_len: int) -> MRUCache:
    cache = MRUCache(max_bytes)
    for i in range(n):
        cache.put(f"k{i}", bytes([i % 256]) * value_len, H, 0)
    return cache


def test_put_get_roundtrip_and_counters() -> None:
    cache = MRUCache(1 << 20)
    cache.put("a/b", b'{"y":1}', H, 0)
    cache.put("é/😀", b"", H, 0)
    assert cache.get("a/b", H) == b'{"y":1}'
    assert cache.get("é/😀", H) == b""
    assert cache.get("nope", H) is None
    assert len(cache) == 2
    st = cache.stats()
    assert (st["hits"], st["misses"], st["entries"]) == (2, 1, 2)
    assert st["bytes"] == cache.bytes_used and cache.max_bytes == 1 << 20
    assert set(st) == {"hits", "misses", "negative_hits", "evictions", "expired", "stale", "entries", "bytes"}


def test_values_are_copies_and_bytes_like_accepted() -> None:
    cache = MRUCache(1 << 20)
    buf = bytearray(b"abc")
    cache.put("k", buf, H, 0)
    buf[0] = ord("z")
    assert cache.get("k", H) == b"abc"
    cache.put("m", memoryview(b"xyz"), H, 0)
    assert cache.get("m", H) == b"xyz"
    for bad in (5, "text", None):
        with pytest.raises(TypeError):
            cache.put("n", bad, H, 0)  # type: ignore[arg-type]
    assert cache.get("n", H) is None


def test_negative_entries() -> None:
    cache = MRUCache(1 << 20)
    cache.put_missing("gone", H, 0)
    assert cache.get("gone", H) is KNOWN_MISSING
    assert not KNOWN_MISSING and repr(KNOWN_MISSING) == "KNOWN_MISSING"
    assert cache.stats()["negative_hits"] == 1 and cache.stats()["hits"] == 0
    cache.put("gone", b"now here", H, 0)  # a value replaces the marker
    assert cache.get("gone", H) == b"now here"
    cache.put_missing("gone", H, 0)  # and the other way round
    assert cache.get("gone", H) is KNOWN_MISSING
    assert len(cache) == 1


def test_ttl_expiry() -> None:
    cache = MRUCache(1 << 20)
    cache.put("short", b"v", H, 40)
    cache.put_missing("short-missing", H, 40)
    cache.put("long", b"v", H, 60_000)
    cache.put("forever", b"v", H, 0)
    assert cache.get("short", H) == b"v"
    assert cache.get("short-missing", H) is KNOWN_MISSING
    time.sleep(0.08)
    assert cache.get("short", H) is None
    assert cache.get("short-missing", H) is None
    assert cache.get("long", H) == b"v" and cache.get("forever", H) == b"v"
    st = cache.stats()
    assert st["expired"] == 2 and st["entries"] == 2
    with pytest.raises(ValueError):
        cache.put("x", b"v", H, -1)


def test_stale_dictionary_hash_is_removed() -> None:
    cache = MRUCache(1 << 20)
    cache.put("k", b"old", 1, 0)
    assert cache.get("k", 2) is None
    assert cache.stats()["stale"] == 1 and len(cache) == 0
    assert cache.get("k", 1) is None  # really removed, not just hidden
    cache.put_missing("m", 1, 0)
    assert cache.get("m", -5) is None and cache.stats()["stale"] == 2


def test_update_in_place() -> None:
    cache = MRUCache(1 << 20)
    cache.put("k", b"x" * 10, 1, 0)
    cache.put("k", b"y" * 3000, 2, 0)  # bigger, new hash
    assert len(cache) == 1 and cache.get("k", 2) == b"y" * 3000
    cache.put("k", b"z", 2, 0)
    fresh = MRUCache(1 << 20)
    fresh.put("k", b"z", 2, 0)
    assert cache.bytes_used == fresh.bytes_used
    cache._check_invariants()


def test_least_recently_used_is_evicted_first() -> None:
    probe = filled(1 << 20, 5, 200)
    budget = probe.bytes_used  # exactly five such entries
    cache = filled(budget, 5, 200)
    assert len(cache) == 5 and cache.stats()["evictions"] == 0
    assert cache.get("k0", H) is not None  # k0 becomes most recent; k1 is now the oldest
    cache.put("k5", b"\x05" * 200, H, 0)
    assert cache.stats()["evictions"] == 1
    assert cache.get("k1", H) is None
    assert all(cache.get(k, H) is not None for k in ("k0", "k2", "k3", "k4", "k5"))
    cache.put("k6", b"\x06" * 200, H, 0)  # k0 was touched before k2..k5 -> now the oldest
    assert cache.get("k0", H) is None and cache.get("k2", H) is not None
    cache._check_invariants()


def test_updating_refreshes_recency() -> None:
    budget = filled(1 << 20, 3, 300).bytes_used
    cache = filled(budget, 3, 300)
    cache.put("k0", b"\x00" * 300, H, 0)
    cache.put("k3", b"\x03" * 300, H, 0)
    assert cache.get("k0", H) is not None and cache.get("k1", H) is None


def test_entry_bigger_than_budget_is_not_kept() -> None:
    cache = MRUCache(4096)
    cache.put("k", b"small", H, 0)
    cache.put("k", b"x" * 5000, H, 0)
    assert cache.get("k", H) is None  # the old value must not survive a failed update
    assert len(cache) == 0 and cache.bytes_used <= 4096
    with pytest.raises(ValueError):
        MRUCache(100)


def test_get_many_delete_clear() -> None:
    cache = MRUCache(1 << 20)
    cache.put("a", b"1", H, 0)
    cache.put_missing("b", H, 0)
    cache.put("c", b"3", H + 1, 0)
    assert cache.get_many(["a", "b", "c", "d"], H) == [b"1", KNOWN_MISSING, None, None]
    st = cache.stats()
    assert (st["hits"], st["negative_hits"], st["misses"], st["stale"]) == (1, 1, 2, 1)
    assert cache.delete("a") is True and cache.delete("a") is False
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.get("b", H) is None
    assert cache.bytes_used == MRUCache(1 << 20).bytes_used
    with pytest.raises(TypeError):
        cache.get_many(["a", 1], H)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        cache.get(None, H)  # type: ignore[arg-type]


def test_surrogate_and_unicode_keys_are_distinct() -> None:
    cache = MRUCache(1 << 20)
    keys = ["\ud800", "\udc00", "é", "e\u0301", ""]
    for i, k in enumerate(keys):
        cache.put(k, bytes([i]), H, 0)
    assert [cache.get(k, H) for k in keys] == [bytes([i]) for i in range(len(keys))]


def test_random_operations_keep_invariants() -> None:
    rng = random.Random(1)
    cache = MRUCache(16_384)
    model: dict[str, bytes | None] = {}
    for step in range(20_000):
        key = f"k{rng.randrange(300)}"
        op = rng.random()
        if op < 0.4:
            value = key.encode() * rng.randrange(0, 8)
            cache.put(key, value, H, 0)
            model[key] = value
        elif op < 0.5:
            cache.put_missing(key, H, 0)
            model[key] = None
        elif op < 0.55:
            cache.delete(key)
            model.pop(key, None)
        else:
            got = cache.get(key, H)
            if got is not None and got is not KNOWN_MISSING:
                assert got == model[key]  # never a value the key did not have
            elif got is KNOWN_MISSING:
                assert model[key] is None
        if step % 1000 == 0:
            cache._check_invariants()
    cache._check_invariants()
    assert cache.stats()["evictions"] > 0


def test_threads_hammering_do_not_corrupt() -> None:
    cache = MRUCache(64 * 1024)
    counts = [0] * 8
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        rng = random.Random(n)
        try:
            for _ in range(20_000):
                key = f"key-{rng.randrange(2000)}"
                op = rng.random()
                if op < 0.35:
                    # Every value is a function of its key: any other bytes mean corruption.
                    cache.put(key, key.encode() * (1 + len(key) % 5), H, rng.choice((0, 1, 50)))
                elif op < 0.45:
                    cache.put_missing(key, H, 0)
                elif op < 0.5:
                    cache.delete(key)
                elif op < 0.6:
                    got_many = cache.get_many([key, key + "x"], H)
                    counts[n] += 2
                    assert got_many[0] in (None, KNOWN_MISSING, key.encode() * (1 + len(key) % 5))
                else:
                    got = cache.get(key, H if op < 0.95 else H + 1)
                    counts[n] += 1
                    assert got in (None, KNOWN_MISSING, key.encode() * (1 + len(key) % 5))
        except BaseException as exc:
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[0]
    cache._check_invariants()
    st = cache.stats()
    assert st["hits"] + st["negative_hits"] + st["misses"] == sum(counts)
    assert st["evictions"] > 0 and st["stale"] > 0 and st["expired"] >= 0


# --- memory actually used ---------------------------------------------------------------------


def test_bytes_used_covers_traced_memory() -> None:
    """Fill far past the budget and measure what the cache really holds with tracemalloc.

    tracemalloc sees every PyMem allocation (entries and index table) at its
    requested size, while ``bytes_used`` charges the allocator's rounded size,
    so traced <= max_bytes must hold exactly. The lower bound (90%) shows the
    budget is really used, i.e. the per-entry charge is not inflated: rounding
    to 16 bytes costs at most 15 bytes on entries of ~100-600 bytes, and the
    index table is charged at its real size. Only allocations made from this file
    count: other threads of the test session (servers, store clients) allocate too.
    """
    max_bytes = 2 << 20
    rng = random.Random(3)
    gc.collect()
    tracemalloc.start()
    try:
        cache = MRUCache(max_bytes)
        for i in range(60_000):  # ~20 MB of payload into a 2 MB cache
            cache.put(f"model/key/{i}", b"v" * rng.randrange(40, 600), H, 0)
            if i % 7 == 0:
                cache.put_missing(f"model/missing/{i}", H, 0)
            if i % 11 == 0:
                cache.put(f"model/key/{i // 2}", b"u" * rng.randrange(1, 900), H, 0)  # updates
        gc.collect()
        mine = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, __file__)])
        held = sum(stat.size for stat in mine.statistics("filename"))
    finally:
        tracemalloc.stop()
    assert cache.stats()["evictions"] > 10 * len(cache)
    assert held <= max_bytes, f"cache holds {held} bytes for a {max_bytes} budget"
    assert held >= 0.9 * max_bytes, f"cache holds only {held} of {max_bytes} bytes"
    assert cache.bytes_used <= max_bytes
    cache._check_invariants()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_rss_stays_near_budget() -> None:
    """Process RSS after pushing 10x the budget through the cache.

    Tolerance: 1.25 x max_bytes + 16 MiB. RSS also counts allocator slack
    (glibc keeps freed chunks, pymalloc keeps partly used arenas) and page
    rounding, which tracemalloc cannot see; 25% covers fragmentation from
    variable-size evictions, 16 MiB the interpreter's own noise. A cache that
    leaked evicted entries would grow by ~10x the budget and fail clearly.
    """
    max_bytes = 48 << 20
    gc.collect()
    start = _rss()
    cache = MRUCache(max_bytes)
    payload = b"p" * 4096
    for i in range(160_000):  # ~480 MB of values through a 48 MB cache
        cache.put(f"rss/{i}", payload[: 200 + (i * 7919) % 2800], H, 0)
    gc.collect()
    grown = _rss() - start
    assert cache.stats()["evictions"] > 100_000
    assert grown <= 1.25 * max_bytes + (16 << 20), f"RSS grew {grown >> 20} MiB for a {max_bytes >> 20} MiB cache"
    del cache


def test_header_constant_and_pickled_marker() -> None:
    assert mru.ENTRY_HEADER_BYTES == 48
    assert pickle.loads(pickle.dumps(KNOWN_MISSING)) is KNOWN_MISSING


# --- eviction fast path: control bytes, free-slot tracking, block reuse ------------------------


def test_dense_table_evictions_are_exact_lru() -> None:
    """Random puts into a tiny cache, so its table is small and its clusters long.

    Every put of a new key evicts into the cluster the new key probes (the
    free slot is tracked through the backward shifts, not probed again) and
    mostly reuses the victim's block. After each step the cache must hold
    exactly the most recently used keys (a suffix of the model's recency
    order) with their latest values, and its structure must check out.
    Sizes cross pymalloc size classes and the 512-byte pymalloc limit;
    updates change a value's size class both ways; negative entries mix in.
    """
    rng = random.Random(5)
    cache = MRUCache(6_000)
    model: dict[str, bytes | None] = {}  # insertion order = recency, oldest first
    for step in range(4_000):
        key = f"k{rng.randrange(120)}/" + "x" * rng.randrange(0, 40)
        if rng.random() < 0.15:
            cache.put_missing(key, H, 0)
            model.pop(key, None)
            model[key] = None
        else:
            value = bytes([step % 251]) * rng.choice((0, 1, 20, 90, 200, 440, 470, 600))
            cache.put(key, value, H, 0)
            model.pop(key, None)
            model[key] = value
        n = len(cache)
        for gone in list(model)[: len(model) - n]:  # evicted: the least recently used
            del model[gone]
        for k, v in list(model.items()):  # oldest first, so the recency order is unchanged
            got = cache.get(k, H)
            assert got == (KNOWN_MISSING if v is None else v), (step, k)
        if step % 50 == 0:
            cache._check_invariants()
    cache._check_invariants()
    st = cache.stats()
    assert st["evictions"] > 1_000 and st["misses"] == 0


def test_get_many_reads_the_clock_only_for_entries_with_a_ttl() -> None:
    cache = MRUCache(1 << 20)
    cache.put("ttl", b"1", H, 30)
    cache.put("forever", b"2", H, 0)
    cache.put_missing("gone", H, 30)
    assert cache.get_many(["forever", "ttl", "gone"], H) == [b"2", b"1", KNOWN_MISSING]
    time.sleep(0.06)
    assert cache.get_many(["forever", "ttl", "gone"], H) == [b"2", None, None]
    st = cache.stats()
    assert st["expired"] == 2 and st["entries"] == 1
    cache._check_invariants()


def test_class_changing_updates_are_charged_like_fresh_entries() -> None:
    """An update into another size class gets a fresh block, charged at its real size."""
    cache = MRUCache(1 << 20)
    for n in (400, 450, 340, 700, 600, 16, 452):  # 500-ish -> 400-ish would stay in the old pymalloc block
        cache.put("k", b"v" * n, H, 0)
        fresh = MRUCache(1 << 20)
        fresh.put("k", b"v" * n, H, 0)
        assert cache.bytes_used == fresh.bytes_used and cache.get("k", H) == b"v" * n
        cache._check_invariants()


def test_debug_allocator_sees_no_write_past_a_block() -> None:
    """Reused and updated-in-place blocks are written only within what was requested.

    Under ``PYTHONMALLOC=debug`` every block has guard bytes right after its
    requested size, checked when the block is freed; a write past them aborts
    the interpreter ("bad trailing pad byte").
    """
    import subprocess
    from pathlib import Path

    root = Path(mru.__file__).resolve().parents[2]
    script = (
        "import random\n"
        "from mly._native.mru import MRUCache\n"
        "rng = random.Random(9)\n"
        "c = MRUCache(20_000)\n"
        "for i in range(20_000):\n"
        "    k = f'k{rng.randrange(300)}'\n"
        "    if rng.random() < 0.1:\n"
        "        c.put_missing(k, 1, 0)\n"
        "    else:\n"
        "        c.put(k, b'x' * rng.randrange(0, 700), 1, 0)\n"
        "    c.get(k, 1)\n"
        "c._check_invariants()\n"
        "c.clear()\n"
        "del c\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONMALLOC": "debug", "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_get_joined_is_get_many_joined_with_the_same_recency_and_counters() -> None:
    """Two caches given the same history: ``get_joined`` on one, ``get_many`` on the other. Every
    answer, counter and the eviction order afterwards must agree (keys repeat, some are negative
    entries, some stale, some expired, some absent)."""
    rng = random.Random(5)
    a, b = MRUCache(64 * 1024), MRUCache(64 * 1024)
    for cache in (a, b):
        for i in range(300):
            if i % 17 == 0:
                cache.put_missing(f"k{i}", H, 60_000)
            else:
                cache.put(f"k{i}", b'{"v":%d}' % i, H if i % 13 else H + 1, 1 if i % 29 == 0 else 0)
    time.sleep(0.01)  # the 1 ms entries expire
    for _ in range(400):
        n = rng.choice([1, 1, 2, 5, 32])
        keys = [f"k{rng.randrange(330)}" for _ in range(n)]
        batch = n > 1 or rng.random() < 0.5
        got = a.get_joined(keys, H, batch)
        values = b.get_many(keys, H)
        if all(type(v) is bytes for v in values):
            assert got == (b"[" + b",".join(values) + b"]" if batch else values[0])
        else:
            assert got == values
        assert a.stats() == b.stats()
    for i in range(400):  # recency: new puts evict the same victims in the same order
        a.put(f"new{i}", b"x" * 100, H, 0)
        b.put(f"new{i}", b"x" * 100, H, 0)
    assert [a.get(f"k{i}", H) for i in range(330)] == [b.get(f"k{i}", H) for i in range(330)]
    with pytest.raises(ValueError):
        a.get_joined(["k1", "k2"], H, False)
