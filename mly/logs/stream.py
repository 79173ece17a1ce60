"""Go's per-model ``Stream`` log: sampled eval requests and their answers as JSON lines.

One line per logged request, the request's inputs first (``batch_size`` too for a
batch), then what Go adds:

    {"country":"us","hour":18,"price":19.99,"eval_duration":412,
     "timestamp":"2026-12-02 17:40:00.123+00","dict_hash":-5023878300699980514,"ctr":0.031,"segment":"b"}

``eval_duration`` is in µs, ``timestamp`` is UTC (left out when the request has its own
``timestamp`` input), and each output is one key: a value for a single-row request,
a list (one value per row) for a batch. The outputs are the answer as sent (after the
transformer, cache hits included); an answer row that is not an object (a custom
transformer's) is logged as ``data``.

Nothing here runs on the event loop but a random draw and a non-blocking put: a
bounded queue feeds one writer thread that formats, writes and rotates the file.
When the queue is full (a slow or stuck disk) the line is dropped and counted
(``stats()["dropped"]``), so the log can fall behind but requests never wait on it.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from mly.common.request import EvalRequest
from mly.config.schema import StreamConfig

__all__ = ["StreamLog", "stream_line"]

log = logging.getLogger("mly.stream")

_WARN_EVERY_S = 10.0
_POLL_S = 0.5


def _utc_timestamp(ts: float) -> str:
    """Go's ``2006-01-02 15:04:05.000-07`` in UTC."""
    seconds = int(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{int((ts - seconds) * 1000):03d}+00"


def _plain(rows: Sequence[Any]) -> list[Any]:
    """Answer rows as plain data: rows are ``orjson.Fragment`` (already JSON, opaque) or
    transformer values, so the one way to read them is a round trip through JSON."""
    return orjson.loads(orjson.dumps(list(rows), option=orjson.OPT_SERIALIZE_NUMPY))  # type: ignore[no-any-return]


def stream_line(values: Any, batch_size: int, rows: Sequence[Any], dict_hash: int, eval_us: int,
                logged_at: float) -> bytes:
    """One log line (without the newline); ``batch_size`` 0 is a single-row request."""
    batch = batch_size > 0
    out: dict[str, Any] = {"batch_size": batch_size, **values} if batch else dict(values)
    out["eval_duration"] = eval_us
    if "timestamp" not in out:
        out["timestamp"] = _utc_timestamp(logged_at)
    out["dict_hash"] = dict_hash
    plain = _plain(rows)
    if plain and all(isinstance(row, dict) for row in plain):
        if batch:
            names = list(plain[0])
            for name in names:
                out[name] = [row.get(name) for row in plain]
        else:
            out.update(plain[0])
    else:
        out["data"] = plain if batch else (plain[0] if plain else None)
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class StreamLog:
    """The stream log of one model: ``offer`` from the event loop, a thread writes."""

    def __init__(self, config: StreamConfig, *, model_id: str, rng: random.Random | None = None) -> None:
        self.config = config
        self.model_id = model_id
        self.path = Path(config.url[len("file://"):] if config.url.startswith("file://") else config.url)
        self._rng = rng or random.Random()
        self._rate = config.sample_rate
        self._queue: queue.Queue[tuple[Any, int, Sequence[Any], int, int, float] | None] = queue.Queue(
            maxsize=config.queue_size
        )
        self.offered = 0
        self.sampled_out = 0
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self.rotations = 0
        self._last_warning = 0.0
        self._file: IO[bytes] | None = None
        self._opened_at = 0.0
        self._entries = 0
        self._open(time.time())  # here, so a path that cannot be written stops the start
        self._thread = threading.Thread(target=self._run, name=f"mly-stream-log-{model_id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ event loop side

    def offer(self, request: EvalRequest, rows: Sequence[Any], dict_hash: int, eval_us: int) -> None:
        """Queue one answered request (or count it sampled out / dropped). Never blocks."""
        self.offered += 1
        if self._rate < 1.0 and self._rng.random() >= self._rate:
            self.sampled_out += 1
            return
        try:
            self._queue.put_nowait((request.values, request.batch_size, rows, dict_hash, eval_us, time.time()))
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warning >= _WARN_EVERY_S:
                self._last_warning = now
                log.warning("model %s: stream log %s is behind; %d line(s) dropped so far",
                            self.model_id, self.path, self.dropped)

    def stats(self) -> dict[str, int]:
        return {"offered": self.offered, "sampled_out": self.sampled_out, "dropped": self.dropped,
                "written": self.written, "errors": self.errors, "rotations": self.rotations,
                "queued": self._queue.qsize()}

    def close(self, timeout_s: float = 5.0) -> bool:
        """Write what is queued (up to ``timeout_s``) and close; False if the writer was stuck."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return False
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    self._flush()
                    self._rotate_if_due(time.time())
                    continue
                if item is None:
                    break
                self._write(item)
                if self._queue.empty():
                    self._flush()
        finally:
            if self._file is not None:
                self._file.close()

    def _write(self, item: tuple[Any, int, Sequence[Any], int, int, float]) -> None:
        values, batch_size, rows, dict_hash, eval_us, logged_at = item
        try:
            line = stream_line(values, batch_size, rows, dict_hash, eval_us, logged_at)
            self._rotate_if_due(logged_at)
            if self._file is None:
                self._open(logged_at)
            assert self._file is not None
            self._file.write(line + b"\n")
            self._entries += 1
            self.written += 1
        except Exception as exc:
            self.errors += 1
            now = time.monotonic()
            if now - self._last_warning >= _WARN_EVERY_S:
                self._last_warning = now
                log.warning("model %s: cannot write the stream log %s: %s", self.model_id, self.path, exc)

    def _flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self.errors += 1
                log.warning("model %s: cannot flush the stream log %s: %s", self.model_id, self.path, exc)

    def _open(self, now: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open across writes, closed in _run
        self._opened_at = now
        self._entries = 0

    def _rotate_if_due(self, now: float) -> None:
        rotation = self.config.rotation
        if rotation is None or self._file is None or self._entries == 0:
            return
        by_age = rotation.every_ms > 0 and (now - self._opened_at) * 1000 >= rotation.every_ms
        by_count = rotation.max_entries > 0 and self._entries >= rotation.max_entries
        if not (by_age or by_count):
            return
        self._file.close()
        self._file = None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        target = self.path.with_name(f"{self.path.name}.{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.{stamp}-{n}")
            n += 1
        os.replace(self.path, target)
        self.rotations += 1
        if rotation.keep > 0:
            self._remove_old(rotation.keep)

    def _remove_old(self, keep: int) -> None:
        rotated = sorted(self.path.parent.glob(f"{self.path.name}.*"), key=lambda p: p.stat().st_mtime_ns)
        for old in rotated[:-keep]:
            try:
                old.unlink()
            except OSError as exc:
                log.warning("model %s: cannot remove the old stream log %s: %s", self.model_id, old, exc)
