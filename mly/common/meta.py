"""``meta/config`` (Go: ``config.Remote``): what a client needs to build keys and reach caches.

The server produces it from its config and the loaded model; the client parses
it. Field names, order and ``omitempty`` follow the Go JSON exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mly.config.load import parse_section
from mly.config.schema import Connection, Datastore, InputField, OutputField, to_json

__all__ = ["DATA_TYPES", "ModelMeta", "dtype_of"]

#: Input/Output ``DataType`` text -> canonical numpy-style dtype name. Go writes
#: ``float`` for float32 inputs and ``int`` is accepted as int64.
DATA_TYPES = {
    "string": "string",
    "int": "int64",
    "int64": "int64",
    "int32": "int32",
    "float": "float32",
    "float32": "float32",
    "float64": "float64",
    "bool": "bool",
}

#: canonical dtype -> the ``DataType`` text the Go server writes for inputs.
GO_INPUT_TYPES = {"string": "string", "int64": "int64", "int32": "int32", "float32": "float",
                  "float64": "float64", "bool": "bool"}


def dtype_of(data_type: str) -> str:
    """Canonical dtype of a config/meta ``DataType``; empty means string (Go's default)."""
    return DATA_TYPES.get(data_type.lower(), "string") if data_type else "string"


_ZERO_DATASTORE: dict[str, Any] = {
    "ID": "", "Cache": None, "Connection": "", "Namespace": "", "Dataset": "",
    "TimeToLiveMs": 0, "RetryTimeMs": 0, "Storable": "", "Fields": None,
}


@dataclass(frozen=True, slots=True)
class ModelMeta:
    inputs: tuple[InputField, ...]
    outputs: tuple[OutputField, ...] = ()
    key_fields: tuple[str, ...] = ()
    auxiliary: tuple[str, ...] = ()
    datastore: Datastore | None = None
    connections: tuple[Connection, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Connections": [to_json(c) for c in self.connections] or None,
        }
        out.update(to_json(self.datastore) if self.datastore is not None else _ZERO_DATASTORE)
        out["Inputs"] = [to_json(f) for f in self.inputs]
        if self.key_fields:
            out["KeyFields"] = list(self.key_fields)
        if self.auxiliary:
            out["Auxiliary"] = list(self.auxiliary)
        if self.outputs:
            out["Outputs"] = [to_json(f) for f in self.outputs]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelMeta:
        """Parse a server's meta/config (Go or mly); inputs are re-indexed by position."""
        inputs = parse_section(data.get("Inputs") or [], tuple[InputField, ...], "Inputs")
        inputs = tuple(
            InputField(f.name, i, f.data_type, f.auxiliary, f.wildcard, f.precision)
            for i, f in enumerate(inputs)
        )
        outputs = parse_section(data.get("Outputs") or [], tuple[OutputField, ...], "Outputs")
        connections = parse_section(data.get("Connections") or [], tuple[Connection, ...], "Connections")
        datastore = None
        if data.get("ID"):
            ds_keys = {k: v for k, v in data.items()
                       if k not in ("Connections", "Inputs", "Outputs", "KeyFields", "Auxiliary")}
            datastore = parse_section(ds_keys, Datastore, "")
        return cls(
            inputs=inputs,
            outputs=outputs,
            key_fields=tuple(data.get("KeyFields") or ()),
            auxiliary=tuple(data.get("Auxiliary") or ()),
            datastore=datastore,
            connections=connections,
        )
