"""Counters every layer may record into; rendering (gmetric JSON) happens on request."""

from __future__ import annotations

from mly.metrics.model import ModelMetrics
from mly.metrics.operation import Operation, Window

__all__ = ["ModelMetrics", "Operation", "Window"]
