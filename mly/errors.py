"""The one exception tree of mly.

Every error knows the HTTP status it maps to and, where one is at fault, the
request field or config key that caused it. The HTTP layer turns any
``MlyError`` into ``{"status": "error", "error": str(exc)}`` with
``exc.status``; the client rebuilds the same classes from those bodies.

    MlyError (500)
    ├── ConfigError                 bad YAML / values; ``key`` is the key path
    ├── ModelLoadError              a model could not be loaded; names the model
    ├── RequestError (400)          the caller sent something wrong; ``field``
    │   ├── InputError              bad value of one input (``field``, ``row``)
    │   ├── UnknownFieldError       a key that is no input of the model
    │   └── MissingFieldError       required inputs absent (``fields``)
    ├── NotFoundError (404)         unknown model or path
    │   └── BatchTooLargeError (413) ``batch_size`` over ``Endpoint.MaxBatchSize``
    ├── PayloadTooLargeError (413)  body over ``Endpoint.BufferSize``
    ├── OverloadedError (429)       batch queue full, try later
    ├── ModelNotReadyError (503)    model not loaded (yet)
    └── EvaluationError (500)       TensorFlow or a transformer failed
        └── DeadlineExceededError   not answered within the handler deadline
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BatchTooLargeError",
    "ConfigError",
    "DeadlineExceededError",
    "EvaluationError",
    "InputError",
    "MissingFieldError",
    "MlyError",
    "ModelLoadError",
    "ModelNotReadyError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RequestError",
    "UnknownFieldError",
]


class MlyError(Exception):
    """Base of every error mly raises on purpose."""

    status: int = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(MlyError):
    """A config file or value is invalid; the message starts with the key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message, field=key or None)
        self.key = key


class ModelLoadError(MlyError):
    """A model could not be loaded or does not fit its config."""

    def __init__(self, model_id: str, message: str) -> None:
        super().__init__(f"model {model_id!r}: {message}")
        self.model_id = model_id


class RequestError(MlyError):
    """The request is malformed; nothing was evaluated."""

    status = 400


class InputError(RequestError):
    """One input's value has the wrong type or shape."""

    def __init__(self, field: str, message: str, *, row: int | None = None) -> None:
        where = f"{field}[{row}]" if row is not None else field
        super().__init__(f"{where}: {message}", field=field)
        self.row = row


class UnknownFieldError(RequestError):
    """A request key that is neither an input nor a reserved key."""

    def __init__(self, field: str, available: Sequence[str]) -> None:
        super().__init__(
            f"unknown field: {field!r}, available: {', '.join(available)}", field=field
        )
        self.available = list(available)


class MissingFieldError(RequestError):
    """Required inputs (auxiliary ones included) were not supplied."""

    def __init__(self, fields: Sequence[str]) -> None:
        names = sorted(fields)
        super().__init__(f"missing fields: {', '.join(names)}", field=names[0] if names else None)
        self.fields = names


class BatchTooLargeError(RequestError):
    """``batch_size`` exceeds the endpoint's row limit; refused before any row is read."""

    status = 413

    def __init__(self, batch_size: int, limit: int) -> None:
        super().__init__(
            f"batch_size: {batch_size} rows exceed the limit of {limit} (Endpoint.MaxBatchSize)",
            field="batch_size",
        )
        self.limit = limit


class NotFoundError(MlyError):
    """Unknown model ID or path."""

    status = 404


class PayloadTooLargeError(MlyError):
    """The body exceeds the endpoint's buffer size."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body too large: limit is {limit} bytes (Endpoint.BufferSize)")
        self.limit = limit


class OverloadedError(MlyError):
    """The model's batch queue is full; the caller should back off and retry."""

    status = 429


class ModelNotReadyError(MlyError):
    """The model has not been loaded successfully yet."""

    status = 503


class EvaluationError(MlyError):
    """TensorFlow or the transformer failed on valid input."""

    status = 500


class DeadlineExceededError(EvaluationError):
    """The request was not answered within the endpoint's deadline (``WriteTimeoutMs``)."""
