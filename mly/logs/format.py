"""Log formatting: the usual text lines, or one JSON object per line for log collectors.

``--log-format json`` turns every log line of the process into JSON (mly's, uvicorn's,
TensorFlow's Python warnings), not only the access log, so a collector never has to
parse two formats from one stream.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import orjson

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "JsonFormatter", "LogFormat", "configure_logging", "current_format"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_current: LogFormat = "text"

#: ``extra=`` key whose dict is merged into the JSON object (the access log's fields).
FIELDS = "mly_fields"


def _utc(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}``; structured fields are top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__.get(FIELDS)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Set the root logger's level and its one stderr handler (replacing any earlier one)."""
    global _current
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _current = "json" if fmt == "json" else "text"


def current_format() -> LogFormat:
    """The format ``configure_logging`` set for this process (``text`` until it is called)."""
    return _current
