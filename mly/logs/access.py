"""The access log: one line per eval request, off unless asked for.

Eval is the hot route, so the fast path holds ``AccessLog | None`` and a server
without ``--access-log`` (or ``Endpoint.AccessLog``) pays one ``is not None`` per
request. A line says which model, how many rows, how many of them the cache
answered, the status and the latency, so a hit can be told from a miss without
reading metrics:

    POST /v1/api/model/ctr/eval 200 model=ctr rows=2 cache=partial cached_rows=1 latency_us=812 client=127.0.0.1:50412

``cache`` is ``hit`` (every row from the cache), ``miss`` (none), ``partial``
(some: ``cached_rows`` says how many) or ``-`` (the model is not cached, or the
request failed before its rows were known).
"""

from __future__ import annotations

import logging
from typing import Any

from mly.logs.format import FIELDS

__all__ = ["ACCESS_LOGGER", "AccessLog", "cache_outcome"]

ACCESS_LOGGER = "mly.access"
_MAX_ERROR = 300


def cache_outcome(rows: int, cached_rows: int, cached: bool) -> str:
    """``hit``, ``miss``, ``partial`` or ``-`` for a request of ``rows`` rows."""
    if not cached or rows <= 0:
        return "-"
    if cached_rows >= rows:
        return "hit"
    return "partial" if cached_rows else "miss"


class AccessLog:
    """Writes access lines to the ``mly.access`` logger (text or JSON, as the process logs)."""

    def __init__(self, *, json: bool = False, logger: logging.Logger | None = None) -> None:
        self.json = json
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    def write(self, *, method: str, path: str, model: str, status: int, rows: int, cached_rows: int,
              cached: bool, latency_us: int, client: Any = None, error: BaseException | None = None) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        outcome = cache_outcome(rows, cached_rows, cached)
        peer = f"{client[0]}:{client[1]}" if client else "-"
        reason = str(error)[:_MAX_ERROR] if error is not None and status != 200 else ""
        if self.json:
            fields: dict[str, Any] = {
                "method": method, "path": path, "model": model, "status": status, "rows": rows,
                "cache": outcome, "cached_rows": cached_rows, "latency_us": latency_us, "client": peer,
            }
            if reason:
                fields["error"] = reason
            logger.info("eval", extra={FIELDS: fields})
            return
        if reason:
            logger.info("%s %s %d model=%s rows=%d cache=%s cached_rows=%d latency_us=%d client=%s error=%r",
                        method, path, status, model, rows, outcome, cached_rows, latency_us, peer, reason)
        else:
            logger.info("%s %s %d model=%s rows=%d cache=%s cached_rows=%d latency_us=%d client=%s",
                        method, path, status, model, rows, outcome, cached_rows, latency_us, peer)
