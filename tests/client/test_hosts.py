"""Hosts: round-robin, failover to a live server when one is stopped, and the stopped one
used again after it restarts (probed after a backoff)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis_server import free_port

from mly.cache.breaker import CircuitBreaker, ExponentialBackoff
from mly.client import Client
from mly.client.errors import NoHostAvailableError, PayloadTooLargeError, TransportError
from mly.client.hosts import HostPool, base_url

ROW = {"sa": "a", "sl": "b", "i1": 20, "fl": 1.0}


def jitter_free(backoff: ExponentialBackoff) -> ExponentialBackoff:
    return ExponentialBackoff(backoff.base_s, backoff.cap_s, jitter=0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_base_urls() -> None:
    assert base_url("10.0.0.1:8080") == "http://10.0.0.1:8080"
    assert base_url("h:443") == "https://h:443" and base_url("h:1443") == "https://h:1443"
    assert base_url("h") == "http://h:80"
    assert base_url("https://h:9/") == "https://h:9"
    with pytest.raises(ValueError, match="hosts"):
        base_url("h:x")


def test_ipv6_hosts_keep_their_brackets() -> None:
    assert base_url("[::1]:8080") == "http://[::1]:8080"
    assert base_url("[::1]") == "http://[::1]:80"
    assert base_url("[2001:db8::7]:443") == "https://[2001:db8::7]:443"
    assert base_url("::1") == "http://[::1]:80"  # no brackets: all of it is the address
    assert base_url("h:") == "http://h:80"
    for bad in ("[::1]x", "[::1", "[nohost]:80", "a:b:c"):
        with pytest.raises(ValueError, match="hosts"):
            base_url(bad)


def test_client_reaches_a_server_on_ipv6_loopback(counting_server: Any, client_model_config: dict,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    server = counting_server(client_model_config, tmp_path_factory.mktemp("ipv6"))
    server._server.config.host = "::1"
    server.start()
    try:
        with Client("nocache", hosts=f"[::1]:{server.port}") as client:
            assert client.predict(ROW).status == "ok"
        assert server.counter.evals == 1
    finally:
        server.stop()


def test_round_robin_failover_and_probe_after_backoff() -> None:
    clock = FakeClock()
    pool = HostPool(["a:1", "b:2", "c:3"], "m/x", backoff_s=1.0, backoff_cap_s=4.0,
                    breaker_factory=lambda backoff, name: CircuitBreaker(backoff, clock=clock, name=name))
    assert pool.hosts[0].eval_url == "http://a:1/v1/api/model/m%2Fx/eval"
    assert [pool.pick().url for _ in range(4)] == ["http://a:1", "http://b:2", "http://c:3", "http://a:1"]
    b = pool.hosts[1]
    pool.refused(b)
    assert not b.up
    # b's turn goes to the first host that is up, in list order.
    assert [pool.pick().url for _ in range(3)] == ["http://a:1", "http://c:3", "http://a:1"]
    clock.now += 1.01  # backoff over: b's next turn is its probe
    assert pool.pick().url == "http://b:2"
    pool.refused(b)  # the probe failed: the backoff doubles (1.6-2 s with jitter)
    clock.now += 1.01
    assert "http://b:2" not in [pool.pick().url for _ in range(3)]
    clock.now += 1.0
    assert "http://b:2" in [pool.pick().url for _ in range(3)]
    for host in pool.hosts:
        pool.refused(host)
    with pytest.raises(NoHostAvailableError, match="no working hosts"):
        pool.pick()
    clock.now += 10
    host = pool.pick()
    pool.connected(host)
    assert host.up


@pytest.fixture(scope="module")
def pair(counting_server: Any, client_model_config: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list]:
    servers = [counting_server(client_model_config, tmp_path_factory.mktemp(f"host{i}")).start() for i in range(2)]
    yield servers
    for server in servers:
        server.stop()


def test_single_host_restart_within_the_retries_fails_nothing(
    counting_server: Any, client_model_config: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = counting_server(client_model_config, tmp_path_factory.mktemp("restart-a")).start()
    second = counting_server(client_model_config, tmp_path_factory.mktemp("restart-b"), port=first.port)
    with Client("nocache", hosts=[first.address], host_backoff_s=0.1, host_backoff_cap_s=2.0,
                max_retries=6) as client:  # retries wait up to ~4.7 s for the host in all
        assert client.predict(ROW).status == "ok"
        first.stop()
        restart = threading.Timer(0.3, second.start)
        restart.start()
        try:
            assert client.predict(ROW).status == "ok"  # refused first, answered by the restarted server
            assert second.counter.evals == 1
            assert client._pool.hosts[0].breaker.failures == 0
        finally:
            restart.join()
            second.stop()


def test_failover_and_restart(pair: list, counting_server: Any, client_model_config: dict,
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    a, b = pair
    # "nocache": every predict is a request, so the host each one went to is visible.
    with Client("nocache", hosts=[a.address, b.address], host_backoff_s=0.2, host_backoff_cap_s=0.4) as client:
        for _ in range(4):
            client.predict(ROW)
        assert a.counter.evals == 2 and b.counter.evals == 2
        a.stop()
        for _ in range(6):
            assert client.predict(ROW).status == "ok"  # refused by a, retried on b
        assert b.counter.evals == 8
        assert not client._pool.hosts[0].up
        # An HTTP error is never retried, on any host: one request, one 413.
        asked = b.counter.evals
        with pytest.raises(PayloadTooLargeError) as large:
            client.predict([dict(ROW, sa="x" * 300, fl=float(i)) for i in range(500)])
        assert large.value.status == 413 and b.counter.evals == asked + 1
        restarted = counting_server(client_model_config, tmp_path_factory.mktemp("host0-again"), port=a.port).start()
        pair[0] = restarted
        deadline = time.monotonic() + 30
        while restarted.counter.evals == 0:
            assert time.monotonic() < deadline, "the restarted host was never probed"
            assert client.predict(ROW).status == "ok"
            time.sleep(0.05)
        assert client._pool.hosts[0].up
        before = (restarted.counter.evals, b.counter.evals)
        for _ in range(4):
            client.predict(ROW)
        assert (restarted.counter.evals - before[0], b.counter.evals - before[1]) == (2, 2)

    # One host: while it is down predictions fail once their retries are spent; once it is back they succeed again.
    with Client("k", hosts=[restarted.address], host_backoff_s=0.1, host_backoff_cap_s=0.2) as single:
        assert single.predict(ROW).status == "ok"
        restarted.stop()
        with pytest.raises(TransportError):
            single.predict(dict(ROW, fl=2.0))
        assert single.predict(ROW).status == "cached"  # local hits need no host
        again = counting_server(client_model_config, tmp_path_factory.mktemp("host0-third"), port=a.port).start()
        pair[0] = again
        deadline = time.monotonic() + 30
        while True:
            try:
                assert single.predict(dict(ROW, fl=2.0)).status == "ok"
                break
            except TransportError:
                assert time.monotonic() < deadline, "the restarted server was never used again"
                time.sleep(0.05)


def test_retries_wait_for_the_backoff_until_the_deadline() -> None:
    clock = FakeClock()
    pool = HostPool(["a:1", "b:2"], "m", backoff_s=1.0, backoff_cap_s=4.0,
                    breaker_factory=lambda backoff, name: CircuitBreaker(jitter_free(backoff), clock=clock,
                                                                         name=name))
    a, b = pool.hosts
    pool.refused(a)
    clock.now += 0.5
    pool.refused(b)
    last = ConnectionRefusedError("refused")
    with pytest.raises(NoHostAvailableError):  # a new request fails at once, as in Go
        pool.pick_or_wait("m", None, clock.now + 10)
    assert pool.pick_or_wait("m", last, clock.now + 10) == pytest.approx(0.5)  # a's backoff ends first
    with pytest.raises(NoHostAvailableError, match="refused"):  # the wait would pass the deadline
        pool.pick_or_wait("m", last, clock.now + 0.4)
    clock.now += 0.5
    assert pool.pick_or_wait("m", last, clock.now) is a  # the probe
    assert pool.pick_or_wait("m", last, clock.now + 10) == pytest.approx(0.5)  # b's backoff, a's probe is out
    pool.connected(a)
    assert pool.pick_or_wait("m", last, clock.now) is a


def test_single_host_down_fails_after_retries() -> None:
    started = time.monotonic()
    with pytest.raises(TransportError, match="no answer after 3 attempts"):
        Client("m", hosts=[f"127.0.0.1:{free_port()}"], max_retries=2, host_backoff_s=0.05)
    assert time.monotonic() - started >= 0.05 + 0.1 * 0.8  # each retry waited for the backoff (jitter <= 20%)


@pytest.mark.asyncio
async def test_async_client_retries_wait_for_the_backoff_too() -> None:
    from mly.client import AsyncClient

    started = time.monotonic()
    client = AsyncClient("m", hosts=[f"127.0.0.1:{free_port()}"], max_retries=2, host_backoff_s=0.05)
    try:
        with pytest.raises(TransportError, match="no answer after 3 attempts"):
            await client.start()
    finally:
        await client.aclose()
    assert time.monotonic() - started >= 0.05 + 0.1 * 0.8
