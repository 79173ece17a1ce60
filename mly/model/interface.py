"""Reconcile a model's configured inputs with its signature.

Pure and TensorFlow-free, so the rules are tested without building models.
The result fixes the request contract (which keys are required, which are fed
to TensorFlow) and the ``meta/config`` input list whose order defines key slots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from mly.common.meta import GO_INPUT_TYPES, dtype_of
from mly.config.schema import InputField, ModelConfig, OutputField

__all__ = ["ModelInterface", "reconcile"]

FLOATS = ("float32", "float64")


class InterfaceError(ValueError):
    """The config and the model's signature disagree; the message names the input."""


@dataclass(frozen=True, slots=True)
class ModelInterface:
    inputs: tuple[InputField, ...]
    """Every request input in ``meta/config`` order (configured first, then the
    model's unconfigured inputs alphabetically); ``Index`` is the position."""
    fed: tuple[str, ...]
    """Signature inputs, alphabetical: these go to TensorFlow."""
    outputs: tuple[OutputField, ...]
    """Signature outputs sorted by name (docs/differences-from-go.md #7)."""
    key_fields: tuple[str, ...]
    dtypes: dict[str, str]
    """Input name -> canonical dtype (``string``, ``int64``, ``float32``, ...)."""
    vocabulary_inputs: tuple[str, ...]
    """Fed inputs whose key uses the model's vocabulary (needs a lookup table)."""

    @property
    def auxiliary(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.inputs if f.auxiliary)

    def input(self, name: str) -> InputField | None:
        return next((f for f in self.inputs if f.name == name), None)

    def keyed_raw(self, names: Sequence[str]) -> ModelInterface:
        """This interface with ``names`` keyed by raw value (``Wildcard``) instead of a vocabulary:
        for inputs whose table the model reaches through a cast that merges values."""
        if not names:
            return self
        inputs = tuple(dataclasses.replace(f, wildcard=True) if f.name in names else f for f in self.inputs)
        vocabulary = tuple(n for n in self.vocabulary_inputs if n not in names)
        return dataclasses.replace(self, inputs=inputs, vocabulary_inputs=vocabulary)


def _configured_inputs(config: ModelConfig) -> list[InputField]:
    if config.inputs:
        return list(config.inputs)
    # Go's MetaInput.Init: KeyFields, then the deprecated Auxiliary list.
    listed = [InputField(name=n) for n in config.key_fields]
    listed += [InputField(name=n, auxiliary=True) for n in config.auxiliary if n not in config.key_fields]
    return listed


def reconcile(
    config: ModelConfig,
    signature_inputs: Sequence[tuple[str, str]],
    signature_outputs: Sequence[tuple[str, str]],
    *,
    caching: bool,
) -> ModelInterface:
    """Merge config and signature; raise ``InterfaceError`` naming the input at fault."""
    model_inputs = dict(sorted(signature_inputs))
    merged: list[InputField] = []
    dtypes: dict[str, str] = {}
    for field in _configured_inputs(config):
        if field.name in model_inputs:
            model_dtype = model_inputs[field.name]
            if field.auxiliary:
                raise InterfaceError(f"input {field.name!r} is a model input and cannot be Auxiliary")
            if field.data_type and dtype_of(field.data_type) != model_dtype:
                raise InterfaceError(
                    f"input {field.name!r}: DataType {field.data_type!r} does not match the model's {model_dtype}"
                )
            dtype = model_dtype
            merged.append(InputField(field.name, 0, GO_INPUT_TYPES[dtype], False, field.wildcard, field.precision))
        else:
            # Not in the model: an auxiliary input, required in requests and seen
            # by transformers, keyed (as a wildcard) only when it is a key field.
            dtype = dtype_of(field.data_type)
            wildcard = field.wildcard or field.name in config.key_fields
            merged.append(InputField(field.name, 0, GO_INPUT_TYPES[dtype], True, wildcard, field.precision))
        dtypes[field.name] = dtype
    for name, dtype in model_inputs.items():
        if name not in dtypes:
            merged.append(InputField(name, 0, GO_INPUT_TYPES[dtype]))
            dtypes[name] = dtype
    inputs = tuple(
        InputField(f.name, i, f.data_type, f.auxiliary, f.wildcard, f.precision) for i, f in enumerate(merged)
    )

    vocabulary: list[str] = []
    for field in inputs:
        dtype = dtypes[field.name]
        if field.precision > 0 and dtype not in FLOATS:
            raise InterfaceError(f"input {field.name!r}: Precision applies to float inputs only, it is {dtype}")
        if field.auxiliary or field.wildcard or not config.use_dict:
            continue
        # Floats and bools only need a key rule where a key is built (a cached model);
        # an uncached model takes them raw.
        if dtype in FLOATS:
            if field.precision <= 0 and caching:
                raise InterfaceError(
                    f"input {field.name!r} is a float: give it Precision (or Wildcard: true) so it can be keyed"
                )
        elif dtype == "bool":
            if caching:
                raise InterfaceError(f"input {field.name!r} is a bool and has no vocabulary: mark it Wildcard")
        else:
            vocabulary.append(field.name)

    outputs_by_name = dict(signature_outputs)
    for out in config.outputs:
        if out.name not in outputs_by_name:
            raise InterfaceError(
                f"output {out.name!r} is not in the model (outputs: {', '.join(sorted(outputs_by_name))})"
            )
    outputs = tuple(
        OutputField(name, i, outputs_by_name[name]) for i, name in enumerate(sorted(outputs_by_name))
    )
    if config.output_type and outputs:
        first = outputs[0]
        outputs = (OutputField(first.name, 0, config.output_type), *outputs[1:])

    for name in config.key_fields:
        if name not in dtypes:
            raise InterfaceError(
                f"KeyFields: {name!r} is not an input of the model (inputs: {', '.join(dtypes)})"
            )
    key_fields = config.key_fields or (tuple(sorted(model_inputs)) if caching else ())
    return ModelInterface(
        inputs=inputs,
        fed=tuple(sorted(model_inputs)),
        outputs=outputs,
        key_fields=tuple(key_fields),
        dtypes=dtypes,
        vocabulary_inputs=tuple(vocabulary),
    )
