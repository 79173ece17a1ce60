"""How long an open batch is held before it is dispatched: fixed and adaptive waits.

Pure: no asyncio, no clock, no threads; times are seconds on the caller's clock
(the batcher passes ``loop.time()``). The batcher calls, on its event loop:

- ``arrived(now, rows)`` for every accepted request;
- ``ran(rows, seconds)`` after every model call (the call alone, timed in its thread);
- ``dispatch_at(opened_at, now, requests, rows)`` after a request joined the open
  batch, which was opened at ``opened_at`` and now holds ``requests`` requests
  and ``rows`` rows: the time at which to dispatch it, or ``None`` for "now".

``FixedWait(wait_us)`` is Go's rule: dispatch ``wait_us`` after the batch's first
request (not rolling); 0 dispatches at once ("instant").

``AdaptiveWait(max_wait_us)`` learns, from what it is told:

- ``a``, ``b``: the model's cost per call and per row, an exponentially weighted
  least-squares fit of ``seconds = a + b * rows`` over recent calls (each call
  weighs ``cost_weight``; ``a, b >= 0``). While the observed batch sizes hardly
  vary (variance < 0.25 rows²) ``b`` cannot be told apart from ``a``: the last
  fitted ``b`` is kept (0 at first), so the cost counts as fixed. That errs
  towards batching, which produces the varied sizes that then separate the two.
- ``g``: the mean gap between requests and ``r``: the mean rows per request
  (EWMA, weight ``arrival_weight``; a gap counts at most 10 x ``max_wait``, so
  one idle spell does not blind the estimate for long).

Rule: an open batch holding ``m`` requests is held for one more request only
while that request is worth waiting for. By joining, it shares this call's fixed
cost instead of paying another ``a`` of executor time, time that requests queue
behind once arrivals are dense. Waiting ``tau`` for it costs each of the ``m``
held requests ``tau``, plus ``b * r`` for computing its rows: ``m * (tau + b*r)``.
Holding pays while ``m * (tau + b*r) < a``, so the patience is::

    patience(m) = a / m - b * r

and after each arrival at time ``t``::

    hold   iff  margin * g <= patience(m)       (margin = 2 by default)
    dispatch at min(t + patience(m), opened_at + max_wait)   if holding, else now

For arrivals at random (Poisson) times holding pays exactly while ``g <
patience(m)``; the ``margin`` keeps a borderline estimate from holding. It
matters for a small closed set of clients: each sends its next request only
after its answer, so the gap it measures is never below a call's cost, and a
lone client (``g`` just above ``a``) must not be made to wait for no one.

Consequences: no wait at low load (``2g > a``) nor before the first call has
been timed (``a = 0``); longer waits for costlier calls; the batch closes itself
near ``m = a / (2g + b*r)`` requests (at most ``a / (b*r)``: past that, a row's
compute outweighs the fixed cost it shares); and the deadline rolls with a
shrinking patience, so when arrivals stop (say a closed set of clients is all in
the batch) it goes after one patience, not after ``max_wait``.

Either rule only decides when a batch *may* go. The batcher adds one of its own:
a batch whose wait is over while every slot is busy keeps taking rows until a
slot frees, so at saturation batches grow with the backlog whatever the policy.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["AdaptiveWait", "FixedWait", "WaitPolicy", "make_policy"]


class WaitPolicy(Protocol):
    """What the batcher asks of a wait rule (see the module docstring)."""

    def arrived(self, now: float, rows: int) -> None: ...

    def ran(self, rows: int, seconds: float) -> None: ...

    def dispatch_at(self, opened_at: float, now: float, requests: int, rows: int) -> float | None: ...

    def current_wait_us(self) -> float:
        """The wait a batch opened now would get (``meta/stats`` ``timeout``)."""
        ...


class FixedWait:
    """Go's wait: a fixed time after the first request of a batch; 0 is instant."""

    __slots__ = ("wait_s", "wait_us")

    def __init__(self, wait_us: float) -> None:
        if wait_us < 0:
            raise ValueError(f"wait_us must be >= 0, got {wait_us}")
        self.wait_us = float(wait_us)
        self.wait_s = wait_us / 1e6

    def arrived(self, now: float, rows: int) -> None:
        pass

    def ran(self, rows: int, seconds: float) -> None:
        pass

    def dispatch_at(self, opened_at: float, now: float, requests: int, rows: int) -> float | None:
        return opened_at + self.wait_s if self.wait_s > 0 else None

    def current_wait_us(self) -> float:
        return self.wait_us

    def __repr__(self) -> str:
        return f"FixedWait(wait_us={self.wait_us:g})"


class AdaptiveWait:
    """Hold a batch only while the next request is expected to save more than it costs."""

    MIN_ROW_VARIANCE = 0.25
    """Below this spread of batch sizes (rows²) a and b cannot be separated."""

    def __init__(
        self,
        max_wait_us: float = 500,
        *,
        margin: float = 2.0,
        cost_weight: float = 0.05,
        arrival_weight: float = 0.1,
    ) -> None:
        if max_wait_us < 0:
            raise ValueError(f"max_wait_us must be >= 0, got {max_wait_us}")
        if not (0 < cost_weight <= 1 and 0 < arrival_weight <= 1):
            raise ValueError("weights must be in (0, 1]")
        if margin < 1:
            raise ValueError(f"margin must be >= 1, got {margin}")
        self.max_wait_s = max_wait_us / 1e6
        self.margin = margin
        self._cost_weight = cost_weight
        self._arrival_weight = arrival_weight
        self._gap_clip_s = 10 * self.max_wait_s
        self._last_arrival: float | None = None
        self.gap_s = math.inf
        """Mean time between requests (inf until two have arrived)."""
        self.rows_per_request = 1.0
        self.calls = 0
        # Exponentially weighted means of x = rows, y = seconds, x², xy.
        self._mx = self._my = self._mxx = self._mxy = 0.0
        self.fixed_cost_s = 0.0
        """``a``: learned cost of one call regardless of its rows."""
        self.row_cost_s = 0.0
        """``b``: learned cost of each row of a call."""

    def arrived(self, now: float, rows: int) -> None:
        last, self._last_arrival = self._last_arrival, now
        w = self._arrival_weight
        self.rows_per_request += w * (rows - self.rows_per_request)
        if last is None:
            return
        gap = min(max(now - last, 0.0), self._gap_clip_s)
        self.gap_s = gap if math.isinf(self.gap_s) else self.gap_s + w * (gap - self.gap_s)

    def ran(self, rows: int, seconds: float) -> None:
        x, y = float(rows), max(float(seconds), 0.0)
        if self.calls == 0:
            self._mx, self._my, self._mxx, self._mxy = x, y, x * x, x * y
        else:
            w = self._cost_weight
            self._mx += w * (x - self._mx)
            self._my += w * (y - self._my)
            self._mxx += w * (x * x - self._mxx)
            self._mxy += w * (x * y - self._mxy)
        self.calls += 1
        self._fit()

    def _fit(self) -> None:
        variance = self._mxx - self._mx * self._mx
        if variance >= self.MIN_ROW_VARIANCE:
            self.row_cost_s = max(0.0, (self._mxy - self._mx * self._my) / variance)
        a = self._my - self.row_cost_s * self._mx
        if a < 0:
            # The fit's line crosses zero: keep the observed mean cost, all of it per row.
            a, self.row_cost_s = 0.0, self._my / self._mx if self._mx > 0 else 0.0
        self.fixed_cost_s = a

    def patience_s(self, requests: int) -> float:
        """How long the next request is worth waiting for, given ``requests`` held."""
        return self.fixed_cost_s / max(requests, 1) - self.row_cost_s * self.rows_per_request

    def dispatch_at(self, opened_at: float, now: float, requests: int, rows: int) -> float | None:
        patience = self.patience_s(requests)
        if patience <= 0 or self.max_wait_s <= 0 or self.margin * self.gap_s > patience:
            return None
        due = min(now + patience, opened_at + self.max_wait_s)
        return due if due > now else None

    def current_wait_us(self) -> float:
        patience = self.patience_s(1)
        if patience <= 0 or self.margin * self.gap_s > patience:
            return 0.0
        return min(patience, self.max_wait_s) * 1e6

    def __repr__(self) -> str:
        return (
            f"AdaptiveWait(a={self.fixed_cost_s * 1e6:.0f}us, b={self.row_cost_s * 1e6:.1f}us, "
            f"gap={self.gap_s * 1e6:.0f}us, max_wait={self.max_wait_s * 1e6:.0f}us)"
        )


def make_policy(wait_us: float, *, adaptive: bool) -> WaitPolicy:
    """``AdaptiveWait`` capped at ``wait_us``, or ``FixedWait(wait_us)``."""
    return AdaptiveWait(wait_us) if adaptive else FixedWait(wait_us)
