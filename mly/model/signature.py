"""The ``serving_default`` signature as plain, ordered, TensorFlow-free values.

Everything downstream (config reconciliation, request decoding, key slots,
response encoding) works from these dataclasses, so only this module has to
know how TensorFlow describes a signature. Inputs are alphabetical as in Go;
outputs are sorted by name too, where Go's order is random
per load (docs/differences-from-go.md #7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mly.model.saved_model import SERVING_KEY

__all__ = ["DTYPES", "Signature", "TensorInfo", "read_signature"]

DTYPES = ("string", "int64", "int32", "float32", "float64", "bool")
"""The dtypes mly can decode from JSON and encode back; anything else is refused at load."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One signature input or output: its key, dtype name and static shape (``None`` = any)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(
                f"tensor {self.name!r} has dtype {self.dtype!r}, which mly does not support "
                f"(supported: {', '.join(DTYPES)})"
            )

    @property
    def width(self) -> int | None:
        """Values per row: the product of the dims after the batch dim (``None`` if unknown)."""
        width = 1
        for dim in self.shape[1:]:
            if dim is None:
                return None
            width *= dim
        return width


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


def _info(kind: str, name: str, spec: Any) -> TensorInfo:
    dtype = getattr(getattr(spec, "dtype", None), "name", None)
    if dtype is None:
        raise ValueError(f"signature {kind} {name!r} is not a dense tensor ({type(spec).__name__})")
    shape = spec.shape
    dims: tuple[int | None, ...] = tuple(shape.as_list()) if shape.rank is not None else (None,)
    try:
        return TensorInfo(name, dtype, dims)
    except ValueError as exc:
        raise ValueError(f"signature {kind} {exc}") from None


def read_signature(loaded: Any, key: str = SERVING_KEY) -> Signature:
    """Read ``key``'s inputs and outputs; a ``ValueError`` names any tensor mly cannot serve."""
    signatures = getattr(loaded, "signatures", None)
    if signatures is None or key not in signatures:
        raise ValueError(f"model has no {key!r} signature")
    function = signatures[key]
    args, kwargs = function.structured_input_signature
    if args:
        # Signatures are keyword-only by construction; positional ones cannot be named in a request.
        raise ValueError(f"signature {key!r} has positional inputs; mly needs named inputs")
    outputs = function.structured_outputs
    if not isinstance(outputs, dict):
        raise ValueError(f"signature {key!r} outputs are not named (got {type(outputs).__name__})")
    return Signature(
        inputs=tuple(_info("input", n, kwargs[n]) for n in sorted(kwargs)),
        outputs=tuple(_info("output", n, outputs[n]) for n in sorted(outputs)),
    )
