"""The access log: one line per eval request, off unless asked for.

Eval is the hot route, so the fast path holds ``AccessLog | None`` and a server
without ``--access-log`` (or ``Endpoint.AccessLog``) pays one ``is not None`` per
request. A line says which model, how many rows, how many of them the cache
answered, the status and the latency, so a hit can be told from a miss without
reading metrics:

    2026-12-02 17:40:00,123 INFO mly.access: POST /v1/api/model/ctr/eval 200 model=ctr rows=2 cache=partial cached_rows=1 tiers=memory:1,model:1 latency_us=812 client=127.0.0.1:50412

``cache`` is ``hit`` (every row from the cache), ``miss`` (none), ``partial``
(some: ``cached_rows`` says how many) or ``-`` (the model is not cached, or the
request failed before its rows were known). ``tiers`` says where the rows of a
successful answer came from: ``memo``, ``memory``, ``l1``, ``l2`` and ``model``
(evaluated, or answered by another request's evaluation), each with its row count
(``-`` for a failed request). With ``--log-format json`` the same
fields are keys of one JSON object per line, beside ``time``, ``level``, ``logger``
and ``message`` as every other JSON log line has them.

Lines do not go through ``logging``: a record, its formatting and a flush per
line cost about 13 µs, a large share of a cache hit. They are formatted here
(the time prefix once per second), kept in a buffer and written to stderr in
one call every 100 ms or every 256 lines, and at exit, in the same shape the
``logging`` formatters give the other lines. ``--log-level`` does not silence them.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import time
from typing import Any, TextIO

import orjson

__all__ = ["ACCESS_LOGGER", "AccessLog", "cache_outcome"]

ACCESS_LOGGER = "mly.access"
_MAX_ERROR = 300


_TIER_NAMES = ("memo", "memory", "l1", "l2")


def tier_counts(rows: int, cached_rows: int, tiers: tuple[int, ...] | None) -> dict[str, int]:
    """Rows per source of one answer: the memo, each cache tier, and ``model`` for the rest
    (evaluated, or answered by another request's evaluation); sources of no row left out."""
    counts = {name: n for name, n in zip(_TIER_NAMES, tiers or ()) if n}
    if rows > cached_rows:
        counts["model"] = rows - cached_rows
    return counts


def cache_outcome(rows: int, cached_rows: int, cached: bool) -> str:
    """``hit``, ``miss``, ``partial`` or ``-`` for a request of ``rows`` rows."""
    if not cached or rows <= 0:
        return "-"
    if cached_rows >= rows:
        return "hit"
    return "partial" if cached_rows else "miss"


class AccessLog:
    """Formats access lines (text or JSON, as the process logs) and writes them in batches."""

    def __init__(self, *, json: bool = False, stream: TextIO | None = None, flush_lines: int = 256,
                 flush_interval_s: float = 0.1) -> None:
        self.json = json
        self.stream = stream
        """``None``: ``sys.stderr`` as it is when a batch is written."""
        self.flush_lines = flush_lines
        self.flush_interval_s = flush_interval_s
        self.lines_written = 0
        self.write_errors = 0
        self._buffer: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._prefix = ""
        atexit.register(self.flush)

    def _time(self, now: float) -> str:
        """logging's ``asctime`` (local time) for text, ISO UTC for JSON; the seconds part cached."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) if self.json
                            else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        ms = int((now - second) * 1000)
        return f"{self._prefix}.{ms:03d}Z" if self.json else f"{self._prefix},{ms:03d}"

    def write(self, *, method: str, path: str, model: str, status: int, rows: int, cached_rows: int,
              cached: bool, latency_us: int, client: Any = None, error: BaseException | None = None,
              tiers: tuple[int, ...] | None = None) -> None:
        outcome = cache_outcome(rows, cached_rows, cached)
        sources = tier_counts(rows, cached_rows, tiers) if status == 200 else {}
        peer = f"{client[0]}:{client[1]}" if client else "-"
        reason = str(error)[:_MAX_ERROR] if error is not None and status != 200 else ""
        stamp = self._time(time.time())
        if self.json:
            fields: dict[str, Any] = {
                "time": stamp, "level": "INFO", "logger": ACCESS_LOGGER, "message": "eval",
                "method": method, "path": path, "model": model, "status": status, "rows": rows,
                "cache": outcome, "cached_rows": cached_rows, "tiers": sources, "latency_us": latency_us,
                "client": peer,
            }
            if reason:
                fields["error"] = reason
            line = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE).decode()
        else:
            line = (f"{stamp} INFO {ACCESS_LOGGER}: {method} {path} {status} model={model} rows={rows} "
                    f"cache={outcome} cached_rows={cached_rows} "
                    f"tiers={','.join(f'{k}:{v}' for k, v in sources.items()) or '-'} "
                    f"latency_us={latency_us} client={peer}")
            line = f"{line} error={reason!r}\n" if reason else line + "\n"
        buffer = self._buffer
        buffer.append(line)
        if len(buffer) >= self.flush_lines:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_interval_s, self.flush)
            except RuntimeError:  # no event loop (a direct call): write at once
                self.flush()

    def flush(self) -> None:
        """Write the buffered lines in one call (from the event loop, or at exit)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if not self._buffer:
            return
        data = "".join(self._buffer)
        count = len(self._buffer)
        self._buffer.clear()
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(data)
            stream.flush()
            self.lines_written += count
        except (OSError, ValueError):  # stderr closed or gone: the lines are lost, the server goes on
            self.write_errors += count
