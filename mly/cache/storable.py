"""Storables: how a cached row becomes store fields and back (Go: ``shared/common/storable``).

An external store keeps a row as named fields (Redis hash fields, Aerospike
bins), not as one JSON blob, so that Go readers of a shared Aerospike set see one
bin per output as they expect. A storable decides that mapping; the registry
lets ``Datastores[].Storable`` name one, as in Go.

Field values are plain, JSON-compatible Python (``None``, ``bool``, ``int``,
``float``, ``str``, lists and string-keyed dicts of those). numpy values are
converted by an orjson round trip rather than ``.item()``: orjson writes a
``float32`` with its shortest float32 text (``0.3``, not ``0.30000001192092896``),
so a row read back from Redis or Aerospike prints exactly as the freshly computed
row did from the memory tier.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

import orjson

__all__ = [
    "DictStorable",
    "Storable",
    "register_storable",
    "registered_storables",
    "resolve_storable",
    "to_plain",
]

_T = TypeVar("_T")


@runtime_checkable
class Storable(Protocol):
    """Row <-> fields mapping for external stores."""

    def to_fields(self, row: Any) -> dict[str, Any]:
        """The row as ``{field name: plain JSON-compatible value}``."""
        ...

    def from_fields(self, fields: dict[str, Any]) -> Any:
        """The row back from stored fields; it is then written out with orjson."""
        ...


def to_plain(value: Any) -> Any:
    """``value`` as plain JSON-compatible Python; numpy scalars and arrays included.

    One orjson round trip: fast, exact for float32 (see module docstring), and it
    rejects what JSON cannot hold (raising ``TypeError``) instead of storing
    something no reader can decode.
    """
    if value is None or type(value) in (str, int, bool):
        return value
    try:
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"cannot store {type(value).__name__} value: {exc}") from exc


class DictStorable:
    """The default: a row is a dict of output name -> value, one field per key.

    ``from_fields`` returns the fields sorted by name. Stores do not keep field
    order (Aerospike bins, large Redis hashes), and the default transformer
    sorts outputs by name, so sorting gives back exactly the
    row the memory tier holds.
    """

    def to_fields(self, row: Any) -> dict[str, Any]:
        if not isinstance(row, Mapping):
            raise TypeError(
                f"the default storable needs a dict row, got {type(row).__name__}; "
                "register a storable for this transformer's rows"
            )
        fields = to_plain(dict(row))
        assert isinstance(fields, dict)
        return fields

    def from_fields(self, fields: dict[str, Any]) -> Any:
        return dict(sorted(fields.items()))


DEFAULT_STORABLE = DictStorable()
_REGISTRY: dict[str, Storable] = {}


@overload
def register_storable(name: str) -> Callable[[_T], _T]: ...


@overload
def register_storable(name: str, storable: Any) -> Any: ...


def register_storable(name: str, storable: Any = None) -> Any:
    """Register a storable under ``name`` (``Datastores[].Storable: name`` in config).

    Use as ``register_storable("slf", SlfStorable())`` or as a class decorator
    ``@register_storable("slf")``; a decorated class is instantiated once with no
    arguments and returned unchanged.
    """
    if not name:
        raise ValueError("a storable needs a non-empty name")

    def add(obj: Any) -> Any:
        instance = obj() if isinstance(obj, type) else obj
        if not callable(getattr(instance, "to_fields", None)) or not callable(
            getattr(instance, "from_fields", None)
        ):
            raise TypeError(f"storable {name!r} must define to_fields() and from_fields()")
        existing = _REGISTRY.get(name)
        if existing is not None and type(existing) is not type(instance):
            raise ValueError(f"storable {name!r} is already registered")
        _REGISTRY[name] = instance
        return obj

    if storable is None:
        return add
    return add(storable)


def registered_storables() -> list[str]:
    return sorted(_REGISTRY)


def resolve_storable(name: str) -> Storable:
    """The storable registered as ``name``; empty means ``DictStorable``.

    ``package.module:attr`` imports a storable (class or instance) directly, as
    transformers can be named.
    """
    if not name:
        return DEFAULT_STORABLE
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"storable {name!r} cannot be imported: {exc}") from exc
        register_storable(name, obj)
        return _REGISTRY[name]
    known = ", ".join(registered_storables()) or "none"
    raise ValueError(f"unknown storable {name!r} (registered: {known})")
