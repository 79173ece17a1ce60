"""The Python client of mly (and of any Go viant/mly server): ``pip install mly``.

    from mly.client import Client
    client = Client("ctr", hosts=["127.0.0.1:8080"])
    client.predict({"country": "us", "hour": 18, "price": 19.99}).data

Predictions whose rows are all in the client's cache tiers (its own memory,
then the model's shared Redis/Aerospike stores) are answered in-process with no
network call; only the rows that missed are sent. Keys and request checks are
the server's own code, so both sides always agree. Never imports TensorFlow or
Starlette.

Importing this package loads nothing else: each name is imported on first use
(PEP 562), so a service that imports ``mly.client`` at start-up but predicts
later, or never, does not pay for numpy, httpx and asyncio up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mly.client._async import AsyncClient
    from mly.client._shared import SharedStores
    from mly.client._sync import Client
    from mly.client.errors import (
        InputError,
        MissingFieldError,
        MlyError,
        NoHostAvailableError,
        ProtocolError,
        RequestError,
        TransportError,
        UnknownFieldError,
    )
    from mly.client.message import Message
    from mly.client.options import CacheScope, ClientOptions
    from mly.client.response import Response

__all__ = [
    "AsyncClient",
    "CacheScope",
    "Client",
    "ClientOptions",
    "InputError",
    "Message",
    "MissingFieldError",
    "MlyError",
    "NoHostAvailableError",
    "ProtocolError",
    "RequestError",
    "Response",
    "SharedStores",
    "TransportError",
    "UnknownFieldError",
]

_HOME = {
    "AsyncClient": "_async",
    "CacheScope": "options",
    "Client": "_sync",
    "ClientOptions": "options",
    "InputError": "errors",
    "Message": "message",
    "MissingFieldError": "errors",
    "MlyError": "errors",
    "NoHostAvailableError": "errors",
    "ProtocolError": "errors",
    "RequestError": "errors",
    "Response": "response",
    "SharedStores": "_shared",
    "TransportError": "errors",
    "UnknownFieldError": "errors",
}
"""Each public name -> the module of ``mly.client`` that defines it."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'mly.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mly.client.{home}"), name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
