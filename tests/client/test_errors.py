"""Error answers become the server's own error classes, with status and message, whether
the server is mly (JSON) or Go (text/plain)."""

from __future__ import annotations

import pytest

from mly.client.errors import (
    BatchTooLargeError,
    EvaluationError,
    InputError,
    MissingFieldError,
    MlyError,
    ModelNotReadyError,
    OverloadedError,
    RequestError,
    UnknownFieldError,
    error_from_response,
)


@pytest.mark.parametrize(("status", "body", "cls", "field"), [
    (400, b'{"status":"error","error":"unknown field: \'zz\', available: sa, sl"}', UnknownFieldError, "zz"),
    (400, b'{"status":"error","error":"missing fields: fl, i1"}', MissingFieldError, "fl"),
    (400, b'{"status":"error","error":"i1[3]: expected an integer, got \'x\'"}', InputError, "i1"),
    (400, b"failed to build request due to missing fields: [a], body: {}\n", RequestError, None),
    (413, b'{"status":"error","error":"batch_size: 9 rows exceed the limit of 8 (Endpoint.MaxBatchSize)"}',
     BatchTooLargeError, "batch_size"),
    (429, b'{"status":"error","error":"overloaded"}', OverloadedError, None),
    (503, b'{"status":"error","error":"model \'m\' is not loaded: loading"}', ModelNotReadyError, None),
    (500, b"failed to transform: m, boom\n", EvaluationError, None),
    (405, b'{"status":"error","error":"method DELETE not allowed"}', RequestError, None),
    (502, b"<html>bad gateway</html>", MlyError, None),
])
def test_error_answers_are_rebuilt(status: int, body: bytes, cls: type[MlyError], field: str | None) -> None:
    exc = error_from_response(status, body)
    assert type(exc) is cls
    assert exc.status == status and exc.field == field
    assert exc.message == str(exc) and exc.message and "status" not in exc.message
    if isinstance(exc, InputError):
        assert exc.row == 3
    if isinstance(exc, MissingFieldError):
        assert exc.fields == ["fl", "i1"]
