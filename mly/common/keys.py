"""Cache keys: which slot each input gets, built once per dictionary.

The rules are the Go client's (reference §2.5, §3): one slot per ``meta/config``
input in list order; vocabulary inputs map out-of-vocabulary values to
``[UNK]`` / ``0``; wildcards key their raw value; floats with ``Precision`` are
rounded; everything else leaves an empty slot. The server and the client both
build keys through this one class, so they always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mly._native import keys as _keys
from mly.common.dictionary import Dictionary
from mly.common.meta import dtype_of
from mly.config.schema import InputField

__all__ = ["KeySchema", "Slot"]

SLOT_NONE = _keys.SLOT_NONE
SLOT_STRING_VOCAB = _keys.SLOT_STRING_VOCAB
SLOT_INT_VOCAB = _keys.SLOT_INT_VOCAB
SLOT_WILDCARD = _keys.SLOT_WILDCARD
SLOT_FLOAT = _keys.SLOT_FLOAT


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    kind: int
    dtype: str
    vocabulary: tuple[Any, ...] | None = None
    precision: int = 0


def slot_for(field: InputField, dictionary: Dictionary | None) -> Slot:
    dtype = dtype_of(field.data_type)
    layer = dictionary.layer(field.name) if dictionary is not None else None
    if field.wildcard:
        return Slot(field.name, SLOT_WILDCARD, dtype)
    if dtype in ("float32", "float64"):
        if field.precision > 0:
            return Slot(field.name, SLOT_FLOAT, dtype, precision=field.precision)
        return Slot(field.name, SLOT_NONE, dtype)
    if layer is None:
        return Slot(field.name, SLOT_NONE, dtype)
    if dtype == "string":
        return Slot(field.name, SLOT_STRING_VOCAB, dtype, layer.strings or ())
    if dtype in ("int64", "int32"):
        return Slot(field.name, SLOT_INT_VOCAB, dtype, layer.ints or ())
    return Slot(field.name, SLOT_NONE, dtype)


class KeySchema:
    """Key slots for one model and one dictionary; rebuilt when the dictionary changes."""

    def __init__(self, inputs: Sequence[InputField], dictionary: Dictionary | None) -> None:
        self.slots = tuple(slot_for(f, dictionary) for f in inputs)
        self.dict_hash = dictionary.hash if dictionary is not None else 0
        self._builder = _keys.KeyBuilder(
            [(s.kind, s.vocabulary, s.precision) for s in self.slots]
        )

    @property
    def keyed(self) -> frozenset[str]:
        return frozenset(s.name for s in self.slots if s.kind != SLOT_NONE)

    def keys(self, columns: Mapping[str, np.ndarray], n_rows: int) -> list[str]:
        """One key per row from 1-D columns (length ``n_rows`` or 1)."""
        return self._builder.build(
            [columns[s.name] if s.kind != SLOT_NONE else None for s in self.slots], n_rows
        )

    def key(self, row: Mapping[str, Any]) -> str:
        """The key of one row given as Python scalars."""
        return self._builder.build_row(
            [row[s.name] if s.kind != SLOT_NONE else None for s in self.slots]
        )
