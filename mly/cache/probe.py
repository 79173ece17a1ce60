"""Can a configured store be reached? One blocking round trip, for ``mly-fast check``.

The server itself never asks this at start: a store that is down is only a cache
that misses (its breaker keeps probing), so the server starts anyway. ``check``
reports an unreachable store as a warning so an operator sees the typo in a
hostname or port before production traffic does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mly.config.schema import Config, Connection

__all__ = ["probe_connection", "unreachable_stores"]


def probe_connection(connection: Connection) -> str | None:
    """``None`` if the store answers within its connect timeout, else why not."""
    try:
        if connection.kind == "redis":
            _ping_redis(connection)
        else:
            return _connect_aerospike(connection)
    except Exception as exc:  # any failure is the answer; nothing here may stop `check`
        return f"{type(exc).__name__}: {exc}"
    return None


def _ping_redis(connection: Connection) -> None:
    import redis

    from mly.cache.redis import redis_client_options

    if connection.cluster:
        from mly.cache.redis import sync_redis_client

        client = sync_redis_client(connection)  # connecting reads the slot map from a startup node
        try:
            client.ping()
        finally:
            client.close()
        return
    options = redis_client_options(connection)
    options["socket_timeout"] = options["socket_connect_timeout"]
    with redis.Redis(**options, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0)) as client:
        client.ping()


def _connect_aerospike(connection: Connection) -> str | None:
    """``None`` if it connects, else the client's refusal in words (a server without security
    refuses any Username/Password)."""
    import aerospike

    from mly.cache.aerospike import aerospike_client_config, connect_problem

    if not connection.hosts:
        raise ValueError("no Hostnames")
    try:
        client = aerospike.client(aerospike_client_config(connection)).connect()
    except Exception as exc:  # the client's error, whatever its class: the answer
        return connect_problem(exc)
    client.close()
    return None


def unreachable_stores(config: Config) -> list[str]:
    """One warning per connection a datastore uses that does not answer."""
    used: dict[str, list[str]] = {}
    for datastore in config.datastores:
        refs = [("L1", datastore.connection)]
        if datastore.l2 is not None:
            refs.append(("L2", datastore.l2.connection))
        for tier, connection_id in refs:
            if connection_id:
                used.setdefault(connection_id, []).append(f"{datastore.id} {tier}")
    warnings: list[str] = []
    for connection in config.connections:
        if connection.id not in used:
            continue
        problem = probe_connection(connection)
        if problem is None:
            continue
        address = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in connection.seeds)
        warnings.append(
            f"Connections[{connection.id}] ({connection.kind} {address}, used by {', '.join(used[connection.id])}) "
            f"is unreachable: {problem}; the server will start and treat it as down (lookups miss) until it answers"
        )
    return warnings
