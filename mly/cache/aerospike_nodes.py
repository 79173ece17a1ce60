"""Talking to Aerospike nodes for mly's own lookups: batch-read connections and the partition map.

``NodeConnection`` is ``resp.PipelinedConnection`` with an Aerospike framing: the server answers
the requests of one connection in order, so a FIFO of futures is the whole bookkeeping, and a
connection that dies, stalls past ``Timeout.Total`` or sends a reply that is not a batch reply
fails the lookups waiting on it and is replaced. Replies are received into one buffer kept for
the connection's life. The partition map is read with info requests (proto type 1):
``partition-generation`` and ``replicas``, the latter per namespace a regime, a replica count
and a base64 bitmap of the partitions the node holds at each rank (0: master).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import struct
from array import array
from collections.abc import Sequence

from mly._native.aerospike_wire import NO_OWNER, PARTITIONS, reply_end
from mly.cache.resp import PipelinedConnection, _Protocol

__all__ = ["NodeConnection", "PartitionMap", "parse_replicas", "read_partition_map", "request_info"]

log = logging.getLogger("mly.cache")

RECEIVE_BUFFER_BYTES = 256 * 1024
"""A connection's receive buffer; a longer reply grows it."""
_INFO_HEADER = struct.Struct(">Q")


class _BatchProtocol(_Protocol, asyncio.BufferedProtocol):
    """``resp._Protocol`` reading whole batch replies instead of RESP replies, received into one
    buffer kept for the connection's life (no fresh buffer per read, as a plain protocol gets)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.buffer = bytearray(RECEIVE_BUFFER_BYTES)
        self.view = memoryview(self.buffer)
        self.start = 0
        """Where the first reply not yet handed out begins."""
        self.end = 0
        """Where the bytes received end."""

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.end == len(self.buffer):  # full: drop what was handed out, or grow for a long reply
            kept = self.view[self.start:self.end]
            size = len(self.buffer) * (2 if self.start == 0 else 1)
            buffer = bytearray(size)
            buffer[:len(kept)] = kept
            kept.release()
            self.view.release()
            self.buffer, self.view = buffer, memoryview(buffer)
            self.start, self.end = 0, self.end - self.start
        return self.view[self.end:]

    def data_received(self, data: bytes) -> None:
        """What an event loop that hands over bytes instead of filling ``get_buffer`` calls (uvloop
        does so for this class, whose base is a plain protocol): the same, after one copy."""
        at, size = 0, len(data)
        while at < size:
            free = self.get_buffer(size - at)
            taken = min(len(free), size - at)
            free[:taken] = data[at:at + taken]
            free.release()
            self.buffer_updated(taken)
            at += taken

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        waiting = self.waiting
        view = self.view
        try:
            while True:
                end = reply_end(view[self.start:self.end])
                if end < 0:
                    break
                if not waiting:
                    raise ValueError("a reply arrived that no request asked for")
                reply = bytes(view[self.start:self.start + end])
                self.start += end
                waiter = waiting.popleft()
                if not waiter.future.done():  # done: its lookup timed out and went away
                    waiter.future.set_result(reply)
        except ValueError as exc:
            self._fail(ConnectionError(f"unreadable reply: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        if self.start == self.end:
            self.start = self.end = 0


class NodeConnection(PipelinedConnection):
    """Batch reads of one event loop over one socket to one Aerospike node, reopened when it dies."""

    async def _connect(self) -> _Protocol:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _BatchProtocol(self.name), endpoint.host, endpoint.port),
            endpoint.connect_timeout_s,
        )
        return protocol


def request_info(host: str, port: int, names: Sequence[str], timeout_s: float) -> dict[str, str]:
    """Blocking info request (proto type 1) to one node: ``{name: value}``."""
    payload = "".join(f"{name}\n" for name in names).encode()
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(_INFO_HEADER.pack((2 << 56) | (1 << 48) | len(payload)) + payload)
        header = _receive(sock, 8)
        (value,) = _INFO_HEADER.unpack(header)
        if value >> 56 != 2 or (value >> 48) & 0xFF != 1:
            raise ConnectionError(f"not an info reply from {host}:{port}")
        body = _receive(sock, value & 0xFFFFFFFFFFFF).decode(errors="replace")
    out: dict[str, str] = {}
    for line in body.split("\n"):
        name, _, text = line.partition("\t")
        if name:
            out[name] = text
    return out


def _receive(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionResetError("connection closed by the server")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def parse_replicas(text: str, namespace: str) -> tuple[int, list[bytes]]:
    """The ``replicas`` info of one node for ``namespace``: ``(regime, [bitmap per replica])``, each
    bitmap 512 bytes, bit ``0x80 >> (p % 8)`` of byte ``p // 8`` set when the node holds partition
    ``p`` at that replica rank (0: master). ``(0, [])`` when the node has no such namespace."""
    for entry in text.split(";"):
        name, _, rest = entry.partition(":")
        if name != namespace or not rest:
            continue
        parts = rest.split(",")
        regime, count = int(parts[0]), int(parts[1])
        bitmaps = [base64.b64decode(part) for part in parts[2:2 + count]]
        if len(bitmaps) != count or any(len(b) != PARTITIONS // 8 for b in bitmaps):
            raise ValueError(f"replicas info of namespace {namespace!r} is malformed")
        return regime, bitmaps
    return 0, []


class PartitionMap:
    """Which node masters (rank 0) and holds the first replica (rank 1) of every partition."""

    def __init__(self, nodes: list[tuple[str, int]], ranks: list[array[int]], generations: dict[str, str]) -> None:
        self.nodes = nodes
        self.ranks = ranks
        self.generations = generations


def read_partition_map(nodes: list[tuple[str, int]], namespace: str, timeout_s: float) -> PartitionMap:
    """Ask every node for its partitions (blocking). A node that does not answer owns nothing."""
    ranks = [array("H", [NO_OWNER]) * PARTITIONS, array("H", [NO_OWNER]) * PARTITIONS]
    regimes = [array("I", [0]) * PARTITIONS, array("I", [0]) * PARTITIONS]
    generations: dict[str, str] = {}
    for index, (host, port) in enumerate(nodes):
        try:
            info = request_info(host, port, ["partition-generation", "replicas"], timeout_s)
            regime, bitmaps = parse_replicas(info.get("replicas", ""), namespace)
        except (OSError, ValueError) as exc:
            log.debug("aerospike node %s:%d: no partition map: %s", host, port, exc)
            continue
        generations[f"{host}:{port}"] = info.get("partition-generation", "")
        for rank, bitmap in enumerate(bitmaps[:2]):
            owners, seen = ranks[rank], regimes[rank]
            for partition in range(PARTITIONS):
                if bitmap[partition >> 3] & (0x80 >> (partition & 7)) and regime >= seen[partition]:
                    owners[partition] = index
                    seen[partition] = regime
    return PartitionMap(nodes, ranks, generations)
