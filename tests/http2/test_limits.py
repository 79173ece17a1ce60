"""A client that opens streams and never reads cannot grow the server's memory without bound."""

from __future__ import annotations

import threading
import time

import h2.errors
import h2.settings
import orjson
from http2.h2_setup import MAX_STREAMS, ROW, WRITE_TIMEOUT_MS, h2_connections
from http2.h2client import RawH2
from live_server import LiveServer

EVAL = "/v1/api/model/sli/eval"
server_side = h2_connections


def test_streams_a_client_never_reads_are_reset_after_the_write_timeout(h2server: LiveServer) -> None:
    """Window 0: the server can send headers but no body. Each blocked answer waits at most
    WriteTimeoutMs, then its stream is reset (CANCEL) and its memory freed."""
    client = RawH2(h2server.port, window=0)
    try:
        body = orjson.dumps(ROW)
        sids = [client.request("POST", EVAL, body) for _ in range(MAX_STREAMS)]
        time.sleep(WRITE_TIMEOUT_MS / 2000)
        assert sum(len(c.streams) for c in server_side(h2server)) == MAX_STREAMS  # all blocked on the window
        client.read_until(lambda: all(sid in client.reset for sid in sids))
        assert {client.reset[sid] for sid in sids} == {h2.errors.ErrorCodes.CANCEL}
        assert all(sid not in client.data for sid in sids)
        assert sum(len(c.streams) for c in server_side(h2server)) == 0
        # The connection itself is fine once the client opens its window.
        client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
        assert client.response(client.request("GET", "/v1/api/health"))[0] == 200
    finally:
        client.close()


def test_more_streams_than_advertised_closes_the_connection(h2server: LiveServer) -> None:
    """The limit is in force once the client has acknowledged the server's SETTINGS."""
    client = RawH2(h2server.port, window=0)
    try:
        client.read_until(lambda: client.conn.remote_settings.max_concurrent_streams == MAX_STREAMS)
        for _ in range(MAX_STREAMS):
            client.request("POST", EVAL, b"{", end=False)  # open, body never finished
        # h2 would refuse to open one more itself: lift its view of the limit, as a client that ignores it.
        client.conn.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].appendleft(10**6)
        client.request("GET", "/v1/api/health")
        client.read_until(lambda: client.terminated is not None)
        assert client.terminated is not None
        assert client.terminated.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    finally:
        client.close()


def test_a_flood_without_reading_stops_the_server_reading(h2server: LiveServer, engine: str) -> None:
    """PINGs make the server write (PING ACKs). A client that floods them and never reads
    fills the socket; the server then stops reading, so its own output queue stays bounded
    and the client's sends block instead of the server's memory growing. nghttp2 may instead
    close the connection first: more than 1000 answers queued within one read is a flood to it."""
    client = RawH2(h2server.port, rcvbuf=4096, timeout=2)
    try:
        client.read_until(lambda: len(client.events) > 0)
        frame = bytes.fromhex("000008060000000000") + b"12345678"  # PING, 8 opaque bytes
        burst = frame * 4096
        sent = 0
        client.sock.settimeout(0.2)
        deadline = time.monotonic() + 4
        blocked = False
        while time.monotonic() < deadline:
            try:
                client.sock.sendall(burst)
                sent += len(burst)
            except TimeoutError:
                blocked = True
                break
            except (ConnectionResetError, BrokenPipeError):
                assert engine == "nghttp2", "the h2 engine closed the connection"
                blocked = True
                break
        assert blocked, f"the server kept reading {sent} bytes of PINGs it could not answer"
        buffered = sum(c.transport.get_write_buffer_size() for c in server_side(h2server))
        assert buffered < 1 << 20, f"{buffered} bytes of answers queued in the server"
    finally:
        client.close()


def test_rapid_reset_cannot_pile_up_work(h2server: LiveServer) -> None:
    """Open a stream and reset it at once, hundreds of times: each reset stream is closed for
    HTTP/2 at once, but its eval still runs. The server stops reading while MAX_STREAMS such
    evals are in progress and refuses streams past twice that (one read can hold hundreds), so
    the work in flight (those plus at most MAX_STREAMS open streams) stays bounded however fast
    the client resets."""
    tasks = h2server._server.server_state.tasks
    peak = 0
    done = threading.Event()

    def running() -> int:
        """Tasks still running: a finished one stays in the set until its done callback runs on
        the loop's next pass, which is not work in flight (a batch finishes many at once)."""
        while True:
            try:
                return sum(1 for task in tuple(tasks) if not task.done())
            except RuntimeError:  # the loop changed the set while it was copied: look again
                continue

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, running())
            time.sleep(0.0005)

    perf = h2server.registry.get("sli").metrics.perf
    calls_before = perf.total.count
    watcher = threading.Thread(target=watch)
    watcher.start()
    client = RawH2(h2server.port, timeout=30)
    try:
        for i in range(400):  # unique rows: cache misses, each one a real evaluation
            # Frames are queued here and written 100 open+reset pairs at a time (~5 KB), so one
            # server read holds more than twice the stream limit however fast the server is
            # (client.request() would write each stream on its own).
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                           (b":path", f"{EVAL}?sa=a&sl=b&i1={i}&fl={i / 1000 + 7}".encode()),
                                           (b":authority", b"127.0.0.1")], end_stream=True)
            client.conn.reset_stream(sid)
            if i % 100 == 99:
                client.flush()
        client.flush()
        for _ in range(100):  # refused streams may be retried (Go's client does): the connection is fine
            sid = client.request("GET", "/v1/api/health")
            client.read_until(lambda: sid in client.ended or sid in client.reset)  # noqa: B023
            if sid in client.ended:
                break
            assert client.reset[sid] == h2.errors.ErrorCodes.REFUSED_STREAM
            time.sleep(0.05)
        assert sid in client.ended and client.headers[sid][b":status"] == b"200"
        deadline = time.monotonic() + 30
        while tasks and time.monotonic() < deadline:  # every eval that was started has finished
            time.sleep(0.01)
    finally:
        done.set()
        watcher.join()
        client.close()
    assert 0 < peak <= 3 * MAX_STREAMS, f"{peak} app calls at once"
    # Counted by the server: a refused stream never reaches the app. The client cannot count them
    # (a REFUSED_STREAM for a stream it reset in the same read is not sent: h2 has closed it).
    ran = perf.total.count - calls_before
    assert 0 < ran < 400, f"{ran} of the 400 reset streams ran: none was refused"


def test_streams_reset_before_their_body_is_in_leave_no_work_behind(h2server: LiveServer) -> None:
    """A client that gives up on a request resets its stream, often before the body is complete
    (Go's client does on a timeout). Such a stream has no app call yet, so resetting many of them
    is no work in flight: the connection must go on serving, not stop reading or refuse streams."""
    client = RawH2(h2server.port, timeout=0.5)
    try:
        for _ in range(3 * MAX_STREAMS):
            sid = client.request("POST", EVAL, orjson.dumps(ROW)[:5], end=False)
            client.conn.reset_stream(sid)
            client.flush()
        for _ in range(20):  # a refused stream may be retried (see the rapid-reset test)
            sid = client.request("POST", EVAL, orjson.dumps(ROW))
            client.read_until(lambda: sid in client.ended or sid in client.reset or client.closed, limit=20)  # noqa: B023
            if sid in client.ended:
                break
            assert client.reset[sid] == h2.errors.ErrorCodes.REFUSED_STREAM
            time.sleep(0.05)
        assert sid in client.ended and client.headers[sid][b":status"] == b"200"
    finally:
        client.close()
