"""The exact-request response memo: request bytes -> the ``data`` of the answer, per generation.

Repeated traffic often repeats byte for byte (the same page asks the same batch
again). For such a request, parsing, keying every row and looking each key up
cost more than the HTTP round trip itself; the memo answers it with one lookup.
It sits in front of the per-row path, not instead of it: a body that differs in
one byte is a memo miss and still gets per-row cache hits.

Why it can never serve a stale answer: a memo belongs to one ``Generation`` and
is dropped with it, so a reload (new weights or a new dictionary) starts empty;
an answer is stored only if the generation that computed it is still the
current one when it is stored. Only the ``data`` part is kept: the envelope
(``dictHash``, ``serviceTimeMcs``) is rebuilt for every answer.

Entries live in the same native MRU cache as the memory tier, bounded in bytes
(``ResponseMemo.SizeMb``); bodies above ``MaxBodyBytes`` are not memoised.

Why it decides per model how much to use itself: on traffic whose bodies never repeat (a
page asking for N candidates) no entry is ever used, and looking up and storing each
answer (copies of the body and the answer, a hash of the body, an eviction) cost about a
fifth of the throughput of the per-row path. So every ``WINDOW`` counted lookups the memo
looks at its hit rate: below ``MIN_HIT_RATE`` only one body in ``SAMPLE_EVERY`` is looked
up and stored (``uses``), chosen from the body's bytes so that a repeated body is always
chosen or never; the others skip the memo at the cost of a few integer operations. Bodies
that start repeating are noticed through the sampled ones (their entries hit) and every
body uses the memo again.

Why it also shrinks while the hit rate is low: on traffic that never repeats, the sampled
answers alone filled its whole budget with answers nobody asks for again (34 MB after 90,000
candidate batches, on its way to ``SizeMb``). While sampling, the memo holds at most
``SAMPLING_BYTES``, enough to notice bodies that repeat. The switch either way starts an empty
memo: what is dropped was not being used.
"""

from __future__ import annotations

from mly._native.mru import MRUCache
from mly.config.schema import ResponseMemoConfig

__all__ = ["GET_KEY_PREFIX", "ResponseMemo", "memo_key"]

_ROWS = 4  # bytes of the row count stored in front of each entry (for the access log)
WINDOW = 1024
"""Counted lookups between two decisions on storing."""
MIN_HIT_RATE = 0.05
"""Below this hit rate over a window, storing every answer costs more than the hits save."""
SAMPLE_EVERY = 8
"""While the hit rate is low: one body in this many uses the memo."""
SAMPLING_BYTES = 4 << 20
"""While the hit rate is low: the memo's byte budget (or ``SizeMb``, if smaller)."""


#: The first character of every GET key. latin-1 decodes bytes to U+0000..U+00FF only, so
#: no body, however malformed, decodes to a string holding it: a body's key and a query
#: string's key differ by construction, before anything is parsed (the memo is looked up
#: first). A NUL would not do: a body may start with any byte.
GET_KEY_PREFIX = "\u0100"


def memo_key(method: str, raw: bytes | bytearray) -> str:
    """The memo key of a request: its body (POST/PUT) or its query string (GET).

    latin-1 maps bytes to code points one to one, so two keys of one kind are equal
    exactly when the bytes are; see ``GET_KEY_PREFIX`` for the two kinds.
    """
    text = raw.decode("latin-1")
    return GET_KEY_PREFIX + text if method == "GET" else text


class ResponseMemo:
    def __init__(self, config: ResponseMemoConfig) -> None:
        self.size_bytes = config.size_mb << 20
        self.cache = MRUCache(self.size_bytes)
        self.max_body_bytes = config.max_body_bytes
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.skipped = 0
        """Requests that did not use the memo because the hit rate was low (``storing`` off)."""
        self.storing = True
        """Whether every body uses the memo (is looked up, and its answer stored); decided every
        ``WINDOW`` lookups from their hit rate."""
        self._window_hits = 0
        self._window_lookups = 0

    def uses(self, raw: bytes | bytearray, *, count: bool = True) -> bool:
        """Whether the request of body (or query string) ``raw`` uses the memo: every one while
        the hit rate is good, one in ``SAMPLE_EVERY`` otherwise. The choice is a function of the
        bytes, so a request's two looks (the connection's, then the normal path's, which passes
        ``count``) agree, and a body that repeats is sampled every time or never."""
        if self.storing:
            return True
        n = len(raw)
        if not n or (n + raw[n >> 1] + raw[-1]) % SAMPLE_EVERY == 0:
            return True
        if count:
            self.skipped += 1
        return False

    def get(self, key: str, *, count_miss: bool = True) -> tuple[int, memoryview] | None:
        """``(rows, data)`` of a memoised answer, or ``None``. A first look that the
        request's normal path will repeat on a miss passes ``count_miss=False``."""
        value = self.cache.get(key, 0)
        if not value:  # None (absent); entries are never empty
            if count_miss:
                self.missed()
            return None
        self.hits += 1
        self._counted(1)
        assert isinstance(value, bytes)
        return int.from_bytes(value[:_ROWS], "little"), memoryview(value)[_ROWS:]

    def missed(self) -> None:
        """Count the miss of a first look (``get(..., count_miss=False)``) whose request was then
        answered without the normal path (every row cached): its hit rate must see it."""
        self.misses += 1
        self._counted(0)

    def _counted(self, hit: int) -> None:
        self._window_hits += hit
        self._window_lookups += 1
        if self._window_lookups >= WINDOW:
            storing = self._window_hits >= MIN_HIT_RATE * self._window_lookups
            self._window_hits = self._window_lookups = 0
            if storing != self.storing:
                self.storing = storing
                self.cache = MRUCache(self.size_bytes if storing else min(self.size_bytes, SAMPLING_BYTES))

    def put(self, key: str, rows: int, data: bytes) -> None:
        if len(key) > self.max_body_bytes:
            return
        self.cache.put(key, rows.to_bytes(_ROWS, "little") + data, 0, 0)
        self.stored += 1

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "stored": self.stored, "skipped": self.skipped,
                "storing": self.storing, "entries": len(self.cache),
                "bytesUsed": self.cache.bytes_used, "maxBytes": self.cache.max_bytes}
