"""Refuse configs where two models would read each other's cached rows.

A cache key holds a row's inputs and nothing else: that is the wire format Go
and Python clients share, so a key cannot name its model. Two models on one
store would therefore answer each other's rows (same inputs, same dictionary
hash, different weights). Go's configs give each model its own dataset, so
mly requires that too, at start, instead of scoping keys in a way Go clients
could not read.

Two places are the same when their rows can meet, however the config spells
them: hosts compare by the addresses they resolve to (``localhost`` is
``127.0.0.1``; names are resolved only when everything else already matches),
a single Redis by its first host (the only one it uses), a cluster by any
shared seed, and Redis keys by their text: ``{namespace}:{dataset}:`` prefixes
that one extends the other's (``x:y`` + ``rows`` and ``x`` + ``y:rows``) meet.
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass

from mly.config.schema import Config, Connection
from mly.errors import ConfigError

__all__ = ["validate_store_sharing"]


@dataclass(frozen=True, slots=True)
class _Place:
    model: str
    datastore: str
    key: str
    """The config key naming the dataset (``Dataset`` or ``L2.Dataset``)."""
    kind: str
    seeds: tuple[tuple[str, int], ...]
    """Hosts the store is reached at: a single Redis uses only its first ``Hostnames`` entry."""
    database: int
    namespace: str
    dataset: str

    @property
    def redis_prefix(self) -> str:
        return "".join(f"{part}:" for part in (self.namespace, self.dataset) if part)

    def same_rows(self, other: _Place) -> bool:
        """Whether a key of one can be a key of the other (hosts aside)."""
        if (self.kind, self.database) != (other.kind, other.database):
            return False
        if self.kind == "redis":
            a, b = self.redis_prefix, other.redis_prefix
            return a.startswith(b) or b.startswith(a)
        return (self.namespace, self.dataset) == (other.namespace, other.dataset)


@functools.cache
def _addresses(host: str, port: int) -> frozenset[tuple[str, int]]:
    """The addresses ``host`` resolves to (itself, lower-cased, when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset({(host.lower(), port)})
    return frozenset((str(info[4][0]), port) for info in infos)


def _same_hosts(a: _Place, b: _Place) -> bool:
    mine = {address for host, port in a.seeds for address in _addresses(host, port)}
    return any(address in mine for host, port in b.seeds for address in _addresses(host, port))


def _place(model: str, datastore: str, key: str, connection: Connection, namespace: str, dataset: str) -> _Place:
    seeds = tuple(connection.seeds)
    if connection.kind == "redis" and not connection.cluster:
        seeds = seeds[:1]
    return _Place(model, datastore, key, connection.kind, seeds,
                  connection.database if connection.kind == "redis" else 0, namespace, dataset)


def _places(config: Config, model: str, datastore_id: str) -> list[_Place]:
    """The external stores a model's datastore reads."""
    ds = config.datastore(datastore_id)
    if ds is None:
        return []
    found: list[_Place] = []
    if ds.connection and (l1 := config.connection(ds.connection)) is not None:
        found.append(_place(model, ds.id, "Dataset", l1, ds.namespace, ds.dataset))
    if ds.l2 is not None and ds.l2.connection and (l2 := config.connection(ds.l2.connection)) is not None:
        found.append(_place(model, ds.id, "L2.Dataset", l2, ds.l2.namespace, ds.l2.dataset))
    return found


def validate_store_sharing(config: Config) -> None:
    """Each cached model needs its own ``Datastores`` entry and its own external datasets.

    Several entries may share a ``Connection``; they differ by ``Dataset`` (or
    ``Namespace``). The first model to claim a datastore or a dataset keeps it; the
    error names the later one.
    """
    owners: dict[str, str] = {}
    claimed: list[_Place] = []
    for i, model in enumerate(config.models):
        if not model.datastore:
            continue
        if model.datastore in owners:
            raise ConfigError(
                f"Models[{i}].DataStore",
                f"datastore {model.datastore!r} is already used by model {owners[model.datastore]!r}; "
                "cached rows are keyed by inputs only, so each model needs its own Datastores entry "
                "(entries may share a Connection with a different Dataset)",
            )
        owners[model.datastore] = model.id
        for place in _places(config, model.id, model.datastore):
            other = next((c for c in claimed if c.model != model.id and place.same_rows(c) and _same_hosts(place, c)),
                         None)
            if other is not None:
                j = next(k for k, d in enumerate(config.datastores) if d.id == model.datastore)
                raise ConfigError(
                    f"Datastores[{j}].{place.key}",
                    f"dataset {place.dataset!r} (namespace {place.namespace!r}) holds the same keys as the rows "
                    f"of model {other.model!r} (datastore {other.datastore!r}) on that store; "
                    f"give model {model.id!r} its own Dataset",
                )
            claimed.append(place)
