"""What the server writes about itself besides metrics: the access log, the per-model
stream log of requests and outputs, log formatting, and the profiling dumps."""

from __future__ import annotations

from mly.logs.access import AccessLog
from mly.logs.format import LOG_FORMATS, JsonFormatter, configure_logging

__all__ = ["LOG_FORMATS", "AccessLog", "JsonFormatter", "configure_logging"]
