"""``http1.plain_post`` against a plain-Python reference of its rules, and against llhttp.

The native path may only take requests the full parser (llhttp, through httptools) reads
the same way: every request it accepts must parse there as exactly one keep-alive POST
with the same target and body and none of the headers that change how a request is
read. Generated requests cover the accepted shape and near misses of it (a byte changed,
inserted or removed anywhere), so both sides of every rule are exercised.
"""

from __future__ import annotations

import re
from typing import Any

import httptools
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mly._native.http1 import plain_post
from mly.http.h1limits import LimitedConnection

MAX_HEAD = 8192
MAX_BODY = 32768
_LINE = re.compile(rb"POST (/[A-Za-z0-9\-._~/]*) HTTP/1\.1\r\n")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x21-\x7e \t]*)\r\n")
_REFUSED = {b"transfer-encoding", b"expect", b"upgrade", b"http2-settings", b"te"}


def reference(data: bytes, start: int, max_head: int, max_body: int) -> tuple[str, int, int] | None:
    """The rules of ``plain_post``'s docstring, written plainly."""
    line = _LINE.match(data, start)
    if line is None:
        return None
    pos = line.end()
    length = -1
    counted = len(line.group(1)) + 16  # as ``h1limits.head_size`` counts what llhttp reports
    while True:
        if data[pos:pos + 2] == b"\r\n":
            pos += 2
            break
        field = _FIELD.match(data, pos)
        if field is None:
            return None
        pos = field.end()
        counted += len(field.group(1)) + len(field.group(2)) + 4
        name, value = field.group(1).lower(), field.group(2).rstrip(b" \t")
        if name in _REFUSED:
            return None
        if name == b"connection" and value.lower() != b"keep-alive":
            return None
        if name == b"content-length":
            if length != -1 or not value.isdigit() or len(value) > 9:
                return None
            length = int(value)
    if pos - start > max_head or counted > max_head or length < 0 or length > max_body or len(data) - pos < length:
        return None
    return line.group(1).decode(), pos, pos + length


class _Collect:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def llhttp(data: bytes) -> tuple[_Collect, Any]:
    collect = _Collect()
    parser = httptools.HttpRequestParser(collect)
    parser.feed_data(data)
    return collect, parser


def check(data: bytes, start: int = 0, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
    got = plain_post(data, start, max_head, max_body)
    assert got == reference(data, start, max_head, max_body)
    if got is None:
        return
    path, body_start, end = got
    collect, parser = llhttp(data[start:end])  # the full parser must read it the same way
    assert collect.complete == 1 and parser.get_method() == b"POST" and parser.get_http_version() == "1.1"
    assert parser.should_keep_alive() and not parser.should_upgrade()
    assert collect.url.decode() == path and collect.body == data[body_start:end]
    assert not {name for name, _ in collect.headers} & _REFUSED
    assert LimitedConnection.head_size(collect) <= max_head  # type: ignore[arg-type]  # the full path's count


def request(path: bytes = b"/v1/api/model/m/eval", fields: list[tuple[bytes, bytes]] | None = None,
            body: bytes = b'{"a":1}', length: bool = True) -> bytes:
    fields = [(b"Host", b"localhost"), (b"Content-Type", b"application/json")] if fields is None else fields
    if length:
        fields = [*fields, (b"Content-Length", b"%d" % len(body))]
    return b"POST " + path + b" HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n" + body


def test_a_plain_post_is_taken_with_its_path_and_body() -> None:
    data = request()
    assert plain_post(data, 0, MAX_HEAD, MAX_BODY) == ("/v1/api/model/m/eval", len(data) - 7, len(data))
    check(data)


def test_pipelined_requests_are_taken_one_after_another() -> None:
    one, two = request(body=b"[1]"), request(path=b"/v1/api/model/other/eval", body=b"[2,3]")
    data = one + two
    first = plain_post(data, 0, MAX_HEAD, MAX_BODY)
    assert first is not None and first[2] == len(one)
    assert plain_post(data, first[2], MAX_HEAD, MAX_BODY) == ("/v1/api/model/other/eval", len(data) - 5, len(data))
    check(data, len(one))


@pytest.mark.parametrize("data", [
    request(body=b'{"a":1}')[:-1],  # the body is not all here
    request(fields=[(b"Transfer-Encoding", b"chunked")]),
    request(fields=[(b"Expect", b"100-continue")]),
    request(fields=[(b"Upgrade", b"h2c"), (b"Connection", b"Upgrade, HTTP2-Settings")]),
    request(fields=[(b"Connection", b"close")]),
    request(fields=[(b"Connection", b"keep-alive, close")]),
    request(fields=[(b"TE", b"trailers")]),
    request(fields=[(b"Content-Length", b"7")]),  # twice
    request(length=False),
    request(fields=[(b"X-Folded", b"a\r\n b")]),  # obs-fold
    request(fields=[(b"X-Latin", "é".encode())]),  # obs-text: llhttp decides
    request(fields=[(b"Bad Name", b"x")]),
    request(path=b"/v1/api/model/m/eval?x=1"),
    request(path=b"/v1/api/model/%6d/eval"),
    request(path=b"http://host/v1/api/model/m/eval"),
    request(fields=[(b"Content-Length", b"+7")], length=False),
    request(fields=[(b"Content-Length", b"0000000007")], length=False),  # over 9 digits
    request().replace(b"HTTP/1.1", b"HTTP/1.0"),
    request().replace(b"POST", b"PUT "),
    request().replace(b"\r\n\r\n", b"\n\n"),
    b"\r\n" + request(),
])
def test_anything_else_is_left_to_the_full_parser(data: bytes) -> None:
    assert plain_post(data, 0, MAX_HEAD, MAX_BODY) is None
    check(data)


def test_the_head_and_body_limits_hold() -> None:
    data = request(fields=[(b"X-Pad", b"p" * 200)])
    head = data.index(b"\r\n\r\n") + 4
    assert plain_post(data, 0, head, MAX_BODY) is not None
    assert plain_post(data, 0, head - 1, MAX_BODY) is None
    assert plain_post(data, 0, MAX_HEAD, 7) is not None
    assert plain_post(data, 0, MAX_HEAD, 6) is None


def test_a_head_is_measured_as_the_full_path_counts_it_too() -> None:
    """``h1limits.head_size`` counts each field as ``name: value`` and CRLF, so fields with no
    space after the colon count more than their bytes; the full path refuses a head by that count."""
    data = request(fields=[(b"X-Pad", b"p")] * 20).replace(b": ", b":")
    head = data.index(b"\r\n\r\n") + 4
    assert plain_post(data, 0, head, MAX_BODY) is None
    assert plain_post(data, 0, head + 20, MAX_BODY) is not None
    check(data, 0, head)
    check(data, 0, head + 20)


def test_connection_keep_alive_in_any_case_and_spacing_is_plain() -> None:
    for value in (b"keep-alive", b"Keep-Alive", b"KEEP-ALIVE \t"):
        data = request(fields=[(b"connection", value)])
        assert plain_post(data, 0, MAX_HEAD, MAX_BODY) is not None
        check(data)


_HARMLESS = st.sampled_from([b"Host", b"Content-Type", b"X-Trace", b"Accept"])
_NAMES = st.one_of(_HARMLESS, _HARMLESS, st.sampled_from([
    b"content-length", b"Content-Length", b"Connection", b"Transfer-Encoding", b"Expect", b"Upgrade", b"TE"]))
_VALUES = st.one_of(st.sampled_from([b"keep-alive", b"close", b"7", b"07", b"chunked", b"application/json", b""]),
                    st.sampled_from([b"x", b"a b", b" padded \t"]), st.binary(max_size=12))
_PLAIN_PATH = st.just(b"/v1/api/model/m/eval")  # drawn half the time, so the accepted shape is common
_PATHS = st.one_of(_PLAIN_PATH, _PLAIN_PATH, st.sampled_from([b"/", b"/a b", b"/x?y", b"/%41"]),
                   st.binary(max_size=10).map(lambda b: b"/" + b))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=3))
    body = draw(st.binary(max_size=16))
    data = request(draw(_PATHS), fields, body, draw(st.booleans()))
    edits = draw(st.one_of(st.just([]), st.lists(st.tuples(
        st.integers(0, 10_000), st.sampled_from(["drop", "set", "insert"]),
        st.sampled_from(b" \t\r\n:/,aZ0\x00\x7f\xff")), min_size=1, max_size=2)))
    for at, how, byte in edits:
        at %= len(data)
        if how == "drop":
            data = data[:at] + data[at + 1:]
        elif how == "set":
            data = data[:at] + bytes([byte]) + data[at + 1:]
        else:
            data = data[:at] + bytes([byte]) + data[at:]
    return data + draw(st.sampled_from([b"", b"POST", request(body=b"{}")]))


@settings(max_examples=3000, deadline=None)
@given(requests(), st.integers(0, 400))
@example(request(fields=[(b"Content-Length", b"7 ")], length=False), 8192)
def test_generated_requests_agree_with_the_reference_and_llhttp(data: bytes, max_head: int) -> None:
    try:
        check(data, 0, max_head or MAX_HEAD)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
        raise AssertionError(f"taken natively, refused by llhttp: {exc!r}") from exc
