"""Hosts: round-robin, failover, and a breaker per host (pure state, no I/O).

As the Go client does (its ``host.go``): each call takes the next host in turn;
a host that is down is skipped for the first host that is up, in list order; a
host that refused a connection is marked down and tried again after a backoff
that starts small and doubles per failed probe. The probe is the next real
request sent to it (one at a time, ``CircuitBreaker`` half-open), so no
background task is needed and the sync and async clients share this state.
Only a failure to connect marks a host down: a host that accepted the
connection is up, whatever it answered.

A new request fails at once when every host is down (as in Go); a retry waits
for the first backoff to end (``pick_or_wait``), so a request's retries are
really spent on the hosts, and a server restart that fits in them fails nothing.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from mly.cache.breaker import BreakerState, CircuitBreaker, ExponentialBackoff
from mly.client.errors import NoHostAvailableError, TransportError
from mly.common.wire import META_CONFIG_URI, META_DICTIONARY_URI, MODEL_URI

__all__ = ["Host", "HostPool", "base_url", "exhausted"]

SECURE_PORTS = (443, 1443)
"""Ports the Go client reaches over https; every other port is plain http."""
MIN_WAIT_S = 0.001
"""Shortest sleep of a retry that waits for a host (never a busy loop)."""


def base_url(host: str) -> str:
    """``"h:port"`` -> ``"http://h:port"`` (https on 443/1443, port 80 when absent); URLs pass through.

    An IPv6 address keeps its brackets (``"[::1]:8080"`` -> ``"http://[::1]:8080"``);
    one without brackets (``"::1"``) cannot carry a port, so it gets port 80.
    """
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"hosts: expected 'host:port' or a URL, got {host!r}")
    host = host.strip().rstrip("/")
    if "://" in host:
        return host
    name, port_text = _split_host(host)
    if not port_text:
        return f"http://{name}:80"
    if not port_text.isdigit():
        raise ValueError(f"hosts: bad port in {host!r}")
    port = int(port_text)
    scheme = "https" if port in SECURE_PORTS else "http"
    return f"{scheme}://{name}:{port}"


def _split_host(host: str) -> tuple[str, str]:
    """``(name, port text)``; the name of an IPv6 address is bracketed, as a URL needs it."""
    if host.startswith("["):
        address, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or not _is_ipv6(address):
            raise ValueError(f"hosts: expected '[IPv6 address]:port', got {host!r}")
        return f"[{address}]", rest[1:]
    if host.count(":") > 1:
        if not _is_ipv6(host):
            raise ValueError(f"hosts: bad host {host!r} (an IPv6 address with a port is written '[::1]:8080')")
        return f"[{host}]", ""
    name, _, port_text = host.partition(":")
    return name, port_text


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class Host:
    url: str
    breaker: CircuitBreaker
    eval_url: str = ""
    meta_config_url: str = ""
    meta_dictionary_url: str = ""

    @property
    def up(self) -> bool:
        return self.breaker.state is BreakerState.CLOSED


class HostPool:
    """The hosts of one model; ``pick()`` before each attempt, then report the outcome."""

    def __init__(
        self,
        hosts: Sequence[str],
        model: str,
        *,
        backoff_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        breaker_factory: Callable[..., CircuitBreaker] = CircuitBreaker,
    ) -> None:
        if isinstance(hosts, str):
            hosts = [hosts]
        if not hosts:
            raise ValueError("hosts: at least one 'host:port' is needed")
        model_path = quote(model, safe="")
        self.hosts: list[Host] = []
        for address in hosts:
            url = base_url(address)
            breaker = breaker_factory(ExponentialBackoff(backoff_s, backoff_cap_s), name=url)
            self.hosts.append(Host(
                url, breaker,
                url + MODEL_URI.format(id=model_path),
                url + META_CONFIG_URI.format(id=model_path),
                url + META_DICTIONARY_URI.format(id=model_path),
            ))
        self._turn = itertools.count()

    def pick(self, model: str = "", last: Exception | None = None) -> Host:
        """The next host in turn, else the first that may be tried; raises when none may
        (naming ``last``, the error of the previous attempt, if any)."""
        hosts = self.hosts
        host = hosts[next(self._turn) % len(hosts)]
        if host.breaker.allow():
            return host
        for other in hosts:
            if other is not host and other.breaker.allow():
                return other
        message = f"no working hosts: {', '.join(h.url for h in hosts)} (connections refused; retried after a backoff)"
        if model:
            message = f"model {model!r}: {message}"
        if last is not None:
            message += f"; last error: {type(last).__name__}: {last}"
        raise NoHostAvailableError(message)

    def clock(self) -> float:
        """The hosts' breaker clock (``time.monotonic`` unless a test gives another)."""
        return self.hosts[0].breaker.clock()

    def wait_s(self) -> float:
        """Seconds until some host may be tried: the earliest end of a backoff, or one
        base backoff while another request's probe of a host is still out."""
        now = self.clock()
        waits: list[float] = []
        for host in self.hosts:
            breaker = host.breaker
            if breaker.state is BreakerState.CLOSED:
                return 0.0
            if breaker.state is BreakerState.OPEN:
                waits.append(max(0.0, breaker.retry_at - now))
            else:
                waits.append(breaker.backoff.base_s)
        return min(waits)

    def pick_or_wait(self, model: str, last: Exception | None, deadline: float) -> Host | float:
        """``pick()``; for a retry (``last`` set) while every host backs off, the seconds
        to sleep before asking again instead, unless that passes ``deadline`` (``clock()``)."""
        try:
            return self.pick(model, last)
        except NoHostAvailableError:
            if last is None:
                raise
            wait = self.wait_s()
            if self.clock() + wait > deadline:
                raise
            return max(wait, MIN_WAIT_S)

    @staticmethod
    def connected(host: Host) -> None:
        """The host accepted the connection (whatever it answered): it is up."""
        host.breaker.record_success()

    @staticmethod
    def refused(host: Host) -> None:
        """The connection failed: mark the host down for the backoff."""
        host.breaker.record_failure()

    def failed(self, host: Host, exc: httpx.TransportError) -> None:
        """A transport error: a failed connect marks the host down; any other means it is up."""
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            self.refused(host)
        else:
            self.connected(host)

    @staticmethod
    def abandoned(host: Host) -> None:
        """The attempt was cancelled before anything was learnt about the host."""
        host.breaker.release_probe()


def exhausted(model: str, attempts: int, last: Exception | None) -> TransportError:
    """The error once every attempt failed with a transport error."""
    return TransportError(f"model {model!r}: no answer after {attempts} attempts: {type(last).__name__}: {last}")
