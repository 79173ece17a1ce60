"""One loaded version of a model with everything derived from it.

A request reads ``ModelService.current`` once and uses that generation to the
end, so a reload that swaps in a new generation never mixes the old dictionary
with the new model (or the old keys with the new hash) inside one request.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
from dataclasses import dataclass, field

import orjson

from mly.batching import Batcher
from mly.batching.deferred import RowBuilder
from mly.common.dictionary import Dictionary
from mly.common.keys import KeySchema
from mly.common.meta import ModelMeta
from mly.common.request import Encoder, encode_rows, encoders_for
from mly.config.schema import Config, ModelConfig, StoreField
from mly.model.interface import ModelInterface
from mly.model.loader import LoadedModel
from mly.service.memo import ResponseMemo
from mly.service.singleflight import SingleFlight

__all__ = ["Generation", "build_generation"]


@dataclass(frozen=True)
class Generation:
    loaded: LoadedModel
    key_schema: KeySchema | None
    """``None`` when this model's predictions are not cacheable."""
    meta_json: bytes
    dictionary_gzip: bytes
    encoders: tuple[Encoder, ...] = field(default=())
    """``(input name, dtype code, precision)`` for every request input, in meta order."""
    batcher: Batcher | None = field(default=None, compare=False)
    """Merges concurrent requests' rows into one TensorFlow call (one per generation:
    it is bound to this generation's runner)."""
    flight: SingleFlight = field(default_factory=SingleFlight, compare=False)
    """In-flight evaluations of this generation only: a reload never hands a
    request the result computed by the previous model."""
    memo: ResponseMemo | None = field(default=None, compare=False)
    """Answers of this generation by exact request bytes (``ResponseMemo`` config);
    a reload starts a new, empty one."""
    row_builder: RowBuilder | None = field(default=None, compare=False)
    """Builds the feeds of single-row requests together with their batch (``DeferredRow``);
    ``None`` when some input is not fed to TensorFlow (it must still be validated up front)."""

    @property
    def interface(self) -> ModelInterface:
        return self.loaded.interface

    @property
    def dictionary(self) -> Dictionary | None:
        return self.loaded.dictionary

    @property
    def dict_hash(self) -> int:
        return self.loaded.dictionary.hash if self.loaded.dictionary is not None else 0


def build_meta(model: ModelConfig, config: Config, interface: ModelInterface) -> ModelMeta:
    datastore = config.datastore(model.datastore) if model.datastore else None
    connections = []
    if datastore is not None:
        for conn_id in (datastore.connection, datastore.l2.connection if datastore.l2 else ""):
            conn = config.connection(conn_id) if conn_id else None
            if conn is not None and conn not in connections:
                connections.append(conn)
        if datastore.fields is None:
            # The default storable: one field (store bin) per output.
            fields = tuple(StoreField(o.name, o.data_type) for o in interface.outputs)
            datastore = dataclasses.replace(datastore, fields=fields)
    return ModelMeta(
        inputs=interface.inputs,
        outputs=interface.outputs,
        key_fields=interface.key_fields,
        auxiliary=(),
        datastore=datastore,
        connections=tuple(connections),
    )


def build_generation(model: ModelConfig, config: Config, loaded: LoadedModel) -> Generation:
    interface = loaded.interface
    meta = build_meta(model, config, interface)
    key_schema = None
    if model.use_dict and loaded.dictionary is not None:
        schema = KeySchema(interface.inputs, loaded.dictionary)
        # Cacheable only if every input TensorFlow sees is part of the key;
        # otherwise two different requests could share one cache entry.
        if set(interface.fed) <= schema.keyed:
            key_schema = schema
    dictionary_json = (
        loaded.dictionary.to_gzip_json() if loaded.dictionary is not None else gzip.compress(b"null")
    )
    # Floats are rounded before evaluation only where they are keyed (a cached model),
    # so a cached prediction is exactly the prediction for its key; an uncached
    # model evaluates the value it was sent.
    rounds = key_schema is not None and bool(model.datastore)
    encoders = encoders_for(
        [f.name for f in interface.inputs],
        interface.dtypes,
        {f.name: f.precision for f in interface.inputs} if rounds else {},
    )
    return Generation(
        loaded=loaded,
        key_schema=key_schema,
        meta_json=orjson.dumps(meta.to_json()),
        dictionary_gzip=dictionary_json,
        encoders=encoders,
        memo=ResponseMemo(model.response_memo) if model.response_memo is not None else None,
        row_builder=_row_builder(interface, encoders),
    )


def _row_builder(interface: ModelInterface, encoders: tuple[Encoder, ...]) -> RowBuilder | None:
    """``encode_rows`` over the fed inputs, in feed order, when every input is fed."""
    by_name = {encoder[0]: encoder for encoder in encoders}
    if by_name.keys() != set(interface.fed):
        return None
    return functools.partial(encode_rows, encoders=tuple(by_name[name] for name in interface.fed))
