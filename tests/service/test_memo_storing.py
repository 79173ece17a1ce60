"""The response memo decides from its own hit rate whether storing every answer pays.

The memo and its native MRU cache are the real ones; the keys stand for request bodies.
"""

from __future__ import annotations

from mly.config.schema import ResponseMemoConfig
from mly.service import memo as memo_module
from mly.service.memo import ResponseMemo

WINDOW, SAMPLE_EVERY = memo_module.WINDOW, memo_module.SAMPLE_EVERY
DATA = b'[{"ctr":0.5}]'


def _serve(memo: ResponseMemo, key: str) -> bool:
    """What the eval path does with one body: look up, and store the answer on a miss."""
    if memo.get(key) is not None:
        return True
    memo.put(key, 1, DATA)
    return False


def test_bodies_that_never_repeat_stop_being_stored_and_repeating_ones_start_again() -> None:
    memo = ResponseMemo(ResponseMemoConfig(size_mb=16))
    for i in range(WINDOW):  # a first window of fresh bodies: every answer stored, none used
        assert not _serve(memo, f"fresh-{i}")
    # The decision falls on the window's last lookup, before its answer is stored.
    assert memo.stored == WINDOW - 1 and not memo.storing
    for i in range(WINDOW, 3 * WINDOW):
        _serve(memo, f"fresh-{i}")
    assert not memo.storing
    unstored = 2 * WINDOW + 1
    assert memo.stored == WINDOW - 1 + unstored // SAMPLE_EVERY, "only a sample is stored while no body repeats"
    assert memo.skipped == unstored - unstored // SAMPLE_EVERY
    assert memo.stats()["storing"] is False and memo.stats()["skipped"] == memo.skipped

    # The traffic turns repetitive (a page asking the same batches again): the sampled entries hit,
    # the hit rate passes the bar, and every answer is stored again.
    hot = [f"hot-{i}" for i in range(256)]
    for _ in range(2 * WINDOW // len(hot) + 2 * SAMPLE_EVERY):
        for key in hot:
            _serve(memo, key)
        if memo.storing:
            break
    assert memo.storing
    for key in hot:
        _serve(memo, key)
    hits = memo.hits
    for key in hot:
        assert _serve(memo, key), "every hot body is memoised once storing is back on"
    assert memo.hits == hits + len(hot)


def test_a_memo_that_hits_keeps_storing() -> None:
    memo = ResponseMemo(ResponseMemoConfig(size_mb=16))
    for i in range(4 * WINDOW):
        # one body in ten repeats the one before: a 10% hit rate, above the bar
        _serve(memo, f"body-{i - 1 if i % 10 == 9 else i}")
    assert memo.storing and memo.skipped == 0
