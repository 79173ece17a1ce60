"""Refuse configs where two models would read each other's cached rows.

A cache key holds a row's inputs and nothing else: that is the wire format Go
and Python clients share, so a key cannot name its model. Two models on one
store would therefore answer each other's rows (same inputs, same dictionary
hash, different weights). Go's configs give each model its own dataset, so
mly requires that too, at start, instead of scoping keys in a way Go clients
could not read.
"""

from __future__ import annotations

from mly.config.schema import Config, Connection
from mly.errors import ConfigError

__all__ = ["validate_store_sharing"]

#: Where a store's rows live: kind, seeds (host, port), Redis database, namespace, dataset.
StoreLocation = tuple[str, frozenset[tuple[str, int]], int, str, str]


def _location(connection: Connection, namespace: str, dataset: str) -> StoreLocation:
    return (connection.kind, frozenset(connection.seeds),
            connection.database if connection.kind == "redis" else 0, namespace, dataset)


def _locations(config: Config, datastore_id: str) -> list[tuple[str, StoreLocation]]:
    """The external stores a datastore reads, each with the config key that names it."""
    ds = config.datastore(datastore_id)
    if ds is None:
        return []
    found: list[tuple[str, StoreLocation]] = []
    l1 = config.connection(ds.connection) if ds.connection else None
    if l1 is not None:
        found.append(("Dataset", _location(l1, ds.namespace, ds.dataset)))
    if ds.l2 is not None and ds.l2.connection and (l2 := config.connection(ds.l2.connection)) is not None:
        found.append(("L2.Dataset", _location(l2, ds.l2.namespace, ds.l2.dataset)))
    return found


def validate_store_sharing(config: Config) -> None:
    """Each cached model needs its own ``Datastores`` entry and its own external datasets.

    Several entries may share a ``Connection``; they differ by ``Dataset`` (or
    ``Namespace``). The first model to claim a datastore or a dataset keeps it; the
    error names the later one.
    """
    owners: dict[str, str] = {}
    places: dict[StoreLocation, tuple[str, str]] = {}
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
        for key, place in _locations(config, model.datastore):
            other = places.get(place)
            if other is not None and other[0] != model.id:
                j = next(k for k, d in enumerate(config.datastores) if d.id == model.datastore)
                raise ConfigError(
                    f"Datastores[{j}].{key}",
                    f"dataset {place[4]!r} (namespace {place[3]!r}) on that connection already holds the "
                    f"rows of model {other[0]!r} (datastore {other[1]!r}); give model {model.id!r} its own Dataset",
                )
            places.setdefault(place, (model.id, model.datastore))
