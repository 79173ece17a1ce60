"""A model's dictionary: the vocabulary of each categorical input, and its hash.

The JSON shape is the Go viant/mly one, so Go and Python clients can share a server.
The hash is mly's own (docs/differences-from-go.md #6, #55): every vocabulary
change changes it. Clients only compare hashes this server sent, so that is safe.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mly._native import fnv

__all__ = ["OOV_INT", "OOV_STRING", "Dictionary", "Layer"]

OOV_STRING = "[UNK]"
OOV_INT = "[UNK]"  # an unknown int keys like an unknown string, never as a known 0

_INT64_MASK = (1 << 64) - 1


def _wrap_int64(value: int) -> int:
    value &= _INT64_MASK
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True, slots=True)
class Layer:
    """One input's vocabulary: sorted strings or sorted ints, never both."""

    name: str
    strings: tuple[str, ...] | None = None
    ints: tuple[int, ...] | None = None
    hash: int = field(default=0, compare=False)

    @classmethod
    def of_strings(cls, name: str, values: Iterable[str]) -> Layer:
        strings = tuple(sorted(set(values)))
        return cls(name, strings=strings, hash=fnv.layer_hash_strings(name, strings))

    @classmethod
    def of_ints(cls, name: str, values: Iterable[int]) -> Layer:
        ints = tuple(sorted({int(v) for v in values}))
        packed = np.asarray(ints, dtype=np.int64)
        return cls(name, ints=ints, hash=fnv.layer_hash_ints(name, packed))

    @property
    def size(self) -> int:
        return len(self.strings or self.ints or ())

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Strings": list(self.strings) if self.strings is not None else None,
            "Ints": list(self.ints) if self.ints is not None else None,
            "Hash": self.hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        """Rebuild a layer from ``meta/dictionary`` JSON.

        The server's ``Hash`` is kept as sent: it is the server's word on which
        dictionary a response or cache entry belongs to (a Go server sends a
        constant for int layers, and a client must agree with it, not fix it).
        """
        name = str(data.get("Name", ""))
        strings = data.get("Strings")
        ints = data.get("Ints")
        return cls(
            name,
            strings=tuple(sorted(str(s) for s in strings)) if strings is not None else None,
            ints=tuple(sorted(int(i) for i in ints)) if ints is not None else None,
            hash=int(data.get("Hash") or 0),
        )


@dataclass(frozen=True, slots=True)
class Dictionary:
    """All vocabulary layers of a model, looked up by input name."""

    layers: tuple[Layer, ...] = ()
    hash: int = 0

    @classmethod
    def build(cls, layers: Sequence[Layer], *, file_hash: int = 0) -> Dictionary:
        """Combine the layer hashes in order (Go sums them, so swapping two layers'
        vocabularies kept its hash; docs/differences-from-go.md #55).

        ``file_hash`` (Go: oldest + newest model file mtime in seconds) is the hash
        when there are no layers, so a model without vocabularies still changes
        hash when its files change.
        """
        if not layers:
            return cls((), _wrap_int64(file_hash))
        hashes = np.asarray([layer.hash for layer in layers], dtype=np.int64)
        return cls(tuple(layers), fnv.combine_layer_hashes(hashes))

    def layer(self, name: str) -> Layer | None:
        for layer in self.layers:
            if layer.name == name:
                return layer
        return None

    def to_json(self) -> dict[str, Any]:
        return {"Layers": [layer.to_json() for layer in self.layers], "Hash": self.hash}

    def to_gzip_json(self) -> bytes:
        return gzip.compress(orjson.dumps(self.to_json()), compresslevel=6)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Dictionary:
        """Rebuild from ``meta/dictionary`` JSON (``null`` means no dictionary)."""
        if not data:
            return cls()
        layers = tuple(Layer.from_json(item) for item in data.get("Layers") or ())
        return cls(layers, int(data.get("Hash") or 0))
