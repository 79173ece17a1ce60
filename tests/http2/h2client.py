"""A raw HTTP/2 client on a blocking socket, for what httpx cannot do: full duplex,
never reading, tiny windows, reading the server's SETTINGS and GOAWAY."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame


@dataclass
class Answers:
    """What ``RawH2.read_frames_until_closed`` saw, per stream."""

    status: dict[int, int] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    reset: dict[int, int] = field(default_factory=dict)
    goaway: GoAwayFrame | None = None


class RawH2:
    """Prior-knowledge HTTP/2 over one TCP connection; events are collected per stream."""

    def __init__(self, port: int, *, window: int | None = None, rcvbuf: int | None = None,
                 timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the kernel buffers stay small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.events: list[Any] = []
        self.data: dict[int, bytearray] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes = b"", *, end: bool = True,
                headers: tuple[tuple[bytes, bytes], ...] = ()) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"http"), (b":path", path.encode()),
                  (b":authority", b"127.0.0.1"), *headers]
        self.conn.send_headers(sid, fields, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def send(self, sid: int, body: bytes, *, end: bool = False) -> None:
        self.conn.send_data(sid, body, end_stream=end)
        self.flush()

    def read(self, *, ack: bool = True) -> bool:
        """One socket read; False when the server closed the connection."""
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                if ack:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset[event.stream_id] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.terminated = event
        self.flush()
        return True

    def read_until(self, done: Any, *, limit: int = 1000) -> None:
        for _ in range(limit):
            if done():
                return
            if not self.read():
                break
        assert done(), "the server did not answer as expected"

    def response(self, sid: int) -> tuple[int, bytes]:
        self.read_until(lambda: sid in self.ended or sid in self.reset)
        assert sid not in self.reset, f"stream {sid} was reset ({self.reset[sid]})"
        return int(self.headers[sid][b":status"]), bytes(self.data.get(sid, b""))

    def read_frames_until_closed(self) -> Answers:
        """Read frame by frame until the server closes: after a GOAWAY, h2's client state machine
        refuses every frame, but a client (Go's) still reads the answers to its open streams."""
        frames = FrameBuffer(server=False)
        frames.max_frame_size = 1 << 24
        seen = Answers()
        while chunk := self.sock.recv(65536):
            frames.add_data(chunk)
            for frame in frames:
                if isinstance(frame, HeadersFrame):
                    seen.status[frame.stream_id] = int(dict(self.conn.decoder.decode(frame.data, raw=True))[b":status"])
                elif isinstance(frame, DataFrame):
                    seen.data[frame.stream_id] = seen.data.get(frame.stream_id, b"") + frame.data
                elif isinstance(frame, RstStreamFrame):
                    seen.reset[frame.stream_id] = frame.error_code
                elif isinstance(frame, GoAwayFrame):
                    seen.goaway = frame
                if "END_STREAM" in frame.flags:
                    seen.ended.add(frame.stream_id)
        self.closed = True
        return seen

    def close(self) -> None:
        self.sock.close()
