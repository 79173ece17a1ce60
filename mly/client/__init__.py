"""The Python client of mly (and of any Go viant/mly server): ``pip install mly``.

    from mly.client import Client
    client = Client("ctr", hosts=["127.0.0.1:8080"])
    client.predict({"country": "us", "hour": 18, "price": 19.99}).data

Predictions whose rows are all in the client's cache tiers (its own memory,
then the model's shared Redis/Aerospike stores) are answered in-process with no
network call; only the rows that missed are sent. Keys and request checks are
the server's own code, so both sides always agree. Never imports TensorFlow or
Starlette.
"""

from __future__ import annotations

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
