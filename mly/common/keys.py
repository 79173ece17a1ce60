"""Cache keys: which slot each input gets, built once per dictionary.

The rules are the Go client's: one slot per ``meta/config``
input in list order; vocabulary inputs map out-of-vocabulary values to
``[UNK]`` (ints too: Go's ``0`` is a real id in many vocabularies); wildcards
key their exact value; floats with ``Precision`` are
rounded; everything else leaves an empty slot. The server and the client both
build keys through this one class, so they always agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mly._native import encode as _encode
from mly._native import keys as _keys
from mly.common.dictionary import Dictionary
from mly.common.meta import dtype_of
from mly.config.schema import InputField

__all__ = ["KeySchema", "Slot"]

_INT = (int,)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT32 = (float,)  # its own tuple: ``key_if_plain`` tells float32 inputs apart by identity
_FLOAT64 = (float,)
#: A double whose magnitude reaches this narrows to float32 infinity (half an ulp past
#: float32's largest value, where rounding goes up): encoding refuses it.
_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
#: Plain JSON types accepted without encoding, per input dtype (int32 needs a range check
#: the int64 one does not cover, so it always takes the full path).
_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int64": _INT,
    "float32": _FLOAT32,
    "float64": _FLOAT64,
    "bool": (bool,),
}

_DTYPE_CODES = {"string": _encode.DT_STRING, "int64": _encode.DT_INT64, "int32": _encode.DT_INT32,
                "float32": _encode.DT_FLOAT32, "float64": _encode.DT_FLOAT64, "bool": _encode.DT_BOOL}

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
        # ``narrow``: a Python float of a float32 input is keyed as float32 (Go's
        # FloatKey), of a float64 input as float64, exactly as its encoded column is.
        self._builder = _keys.KeyBuilder(
            [(s.kind, s.vocabulary, s.precision, s.dtype != "float64") for s in self.slots]
        )
        # Every input is type-checked, keyed or not: a cached answer must never turn
        # a request the full path would reject (a wrong-typed auxiliary input) into a 200.
        self._row_checks = tuple((s.name, _SCALAR_TYPES.get(s.dtype)) for s in self.slots)
        self._codes = tuple(_DTYPE_CODES[s.dtype] for s in self.slots)
        self._names = tuple(s.name.encode("utf-8") for s in self.slots)
        self._scales: dict[tuple[int, ...], tuple[float, ...]] = {}

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

    def keys_if_plain(self, values: Mapping[str, Any], n_rows: int) -> list[str] | None:
        """The keys of a batch given as JSON lists (``n_rows`` or 1 values per input) whose
        values all have exactly their input's plain type, else ``None`` (as ``key_if_plain``)."""
        return self._builder.build_plain([values.get(s.name) for s in self.slots], n_rows, self._codes)

    def keys_of_body(self, body: bytes | bytearray, max_rows: int) -> tuple[list[str], bool] | None:
        """The keys of a request body and whether it is a batch, read from its bytes without
        building a Python object per value; ``None`` unless it is the plain shape
        ``keys_if_plain`` (a batch of at most ``max_rows`` rows) or ``key_if_plain`` (one row)
        would key, with exactly the model's inputs. The caller then parses it the common way,
        which decides every error: this never refuses a body."""
        return self._builder.build_body(body, self._names, self._codes, max_rows)

    def rows_of_body(self, body: bytes | bytearray, rows: list[int], precisions: tuple[int, ...],
                     max_rows: int) -> list[np.ndarray] | None:
        """Rows ``rows`` of a body ``keys_of_body`` keys, one column per slot, encoded as
        ``encode_columns`` encodes them (``precisions``: each slot's, 0 for none), without
        a Python object per value; ``None`` for any body ``keys_of_body`` leaves to the common
        path, or one holding a value the encoder would refuse: that path then names it."""
        scales = self._scales.get(precisions)
        if scales is None:
            # The encoder's own scale (``encode._floats``), worked out once per set of precisions.
            scales = self._scales[precisions] = tuple(float(f"1e{p}") if p > 0 else 0.0 for p in precisions)
        return self._builder.body_rows(body, self._names, self._codes, scales, rows, max_rows)

    def key_if_plain(self, row: Mapping[str, Any]) -> str | None:
        """The key of a JSON row whose values all have exactly their input's plain
        type (str, int, float, bool), else ``None``.

        A cache hit then needs no numpy encoding at all. Anything unusual (an
        int given for a float, a wrong type) returns ``None`` so the caller takes
        the full encoding path, which validates it and names the field.
        """
        for name, types in self._row_checks:
            value = row.get(name)
            if types is None or type(value) not in types:
                return None
            if types is _INT and not _INT64_MIN <= int(value) <= _INT64_MAX:  # type: ignore[arg-type]
                return None
            # Checked for every input, keyed or not: a hit must not hide that encoding refuses
            # the value (NaN fails both comparisons).
            if types is _FLOAT32 and not -_FLOAT32_OVERFLOW < value < _FLOAT32_OVERFLOW:  # type: ignore[operator]
                return None
            if types is _FLOAT64 and not -math.inf < value < math.inf:  # type: ignore[operator]
                return None
        return self.key(row)
