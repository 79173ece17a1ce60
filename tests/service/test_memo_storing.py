"""The response memo decides from its own hit rate whether every body uses it.

The memo and its native MRU cache are the real ones; the bodies are real request bytes.
"""

from __future__ import annotations

import orjson

from mly.config.schema import ResponseMemoConfig
from mly.service import memo as memo_module
from mly.service.memo import ResponseMemo, memo_key

WINDOW, SAMPLE_EVERY = memo_module.WINDOW, memo_module.SAMPLE_EVERY
DATA = b'[{"ctr":0.5}]'


def body(i: int) -> bytes:
    return orjson.dumps({"batch_size": 2, "site": [f"s{i}", f"t{i * 7}"], "bid": [i / 100, 1.5]})


def serve(memo: ResponseMemo, raw: bytes, data: bytes = DATA) -> bool:
    """What the eval path does with one body: the connection's look, then the normal path's
    (look up, store the answer on a miss). True when the memo answered."""
    if not memo.uses(raw, count=False):
        assert not memo.uses(raw), "a request's two looks must agree"
        return False
    key = memo_key("POST", raw)
    if memo.get(key) is not None:
        return True
    memo.put(key, 2, data)
    return False


def test_bodies_that_never_repeat_stop_using_the_memo_and_repeating_ones_bring_it_back() -> None:
    memo = ResponseMemo(ResponseMemoConfig(size_mb=16))
    for i in range(WINDOW):  # a first window of fresh bodies: every one looked up and stored, none used
        assert not serve(memo, body(i))
    assert memo.misses == WINDOW and not memo.storing
    stored = memo.stored
    fresh = [body(i) for i in range(WINDOW, 9 * WINDOW)]
    for raw in fresh:
        serve(memo, raw)
    assert not memo.storing
    used = memo.stored - stored
    assert used + memo.skipped == len(fresh)
    # About one body in SAMPLE_EVERY still uses it (looked up and stored), chosen by its bytes.
    assert 0.5 * len(fresh) / SAMPLE_EVERY < used < 2 * len(fresh) / SAMPLE_EVERY
    assert memo.stats()["storing"] is False and memo.stats()["skipped"] == memo.skipped
    # While sampling it holds only enough to notice repeats: a small budget, not SizeMb.
    assert memo.stats()["maxBytes"] == memo_module.SAMPLING_BYTES < 16 << 20

    # The traffic turns repetitive (a page asking the same batches again): the sampled bodies hit,
    # the hit rate passes the bar, and every body uses the memo again.
    hot = [body(100_000 + i) for i in range(512)]
    for _ in range(4 * SAMPLE_EVERY * WINDOW // len(hot)):
        for raw in hot:
            serve(memo, raw)
        if memo.storing:
            break
    assert memo.storing and memo.stats()["maxBytes"] == 16 << 20  # its whole budget again
    for raw in hot:
        serve(memo, raw)
    hits = memo.hits
    assert all(serve(memo, raw) for raw in hot), "every hot body is memoised once the memo is used again"
    assert memo.hits == hits + len(hot)


def test_a_memo_that_hits_keeps_every_body() -> None:
    memo = ResponseMemo(ResponseMemoConfig(size_mb=16))
    for i in range(4 * WINDOW):
        serve(memo, body(i - 1 if i % 10 == 9 else i))  # one body in ten repeats the one before: 10% hits
    assert memo.storing and memo.skipped == 0


def test_while_sampling_the_memo_stays_within_its_small_budget() -> None:
    """Never-repeating bodies whose answers are large: the memo evicts within ``SAMPLING_BYTES``
    rather than filling ``SizeMb`` with answers nobody asks for again."""
    memo = ResponseMemo(ResponseMemoConfig(size_mb=64))
    answer = b"[" + b",".join(b'{"ctr":0.123456789}' for _ in range(200)) + b"]"  # about 4 KB
    n = 0
    while memo.storing:
        assert not serve(memo, body(n), answer)
        n += 1
    for i in range(n, n + 40 * SAMPLE_EVERY * 1024):
        assert not serve(memo, body(i), answer)
    stats = memo.stats()
    assert not stats["storing"] and stats["stored"] > 2 * memo_module.SAMPLING_BYTES // len(answer)
    assert stats["bytesUsed"] <= memo_module.SAMPLING_BYTES
