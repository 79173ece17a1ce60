"""The client without I/O: validation, keys, cache merging, bodies, answers.

``Client`` and ``AsyncClient`` are two short drivers of this core: a predict
is ``fast`` (one plain row answered by the local tier) or ``plan`` -> the
driver's lookup -> ``absorb`` -> ``body`` -> the driver's POST -> ``finish``. Every step here is pure or touches only in-process state (the MRU
tier), so the two clients cannot drift apart.

Keys come from ``KeySchema`` (the server's own key builder) and requests are
checked by ``mly.common.request`` (the server's own validation), so a key or an
error message can never differ between the two sides.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from mly.client.errors import ProtocolError, error_from_response
from mly.client.response import Response, row_converter
from mly.common.dictionary import Dictionary
from mly.common.keys import KeySchema
from mly.common.meta import ModelMeta, dtype_of
from mly.common.request import (
    Encoder,
    EvalRequest,
    check_names,
    encode_columns,
    encoders_for,
    parse_body,
)
from mly.common.wire import BATCH_SIZE, CACHE_KEY, STATUS_CACHED, STATUS_OK
from mly.errors import MlyError, RequestError

if TYPE_CHECKING:
    from mly._native.mru import MRUCache
    from mly.cache.tiered import TieredCache
    from mly.client.options import ClientOptions

__all__ = ["ClientCore", "ModelState", "Plan", "parse_dictionary", "parse_meta"]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_FLOATS = ("float32", "float64")


def parse_meta(body: bytes | Mapping[str, Any] | ModelMeta) -> ModelMeta:
    """``meta/config`` bytes or JSON -> ``ModelMeta``; a bad document is a ``ProtocolError``."""
    if isinstance(body, ModelMeta):
        return body
    try:
        data = orjson.loads(body) if isinstance(body, (bytes, bytearray)) else dict(body)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return ModelMeta.from_json(data)
    except (ValueError, MlyError) as exc:
        raise ProtocolError(f"meta/config is not a model config: {exc}") from None


def parse_dictionary(body: bytes | Mapping[str, Any] | Dictionary | None) -> Dictionary | None:
    """``meta/dictionary`` (gzip or plain JSON) -> ``Dictionary``; ``null`` -> None (no dictionary)."""
    if body is None or isinstance(body, Dictionary):
        return body
    try:
        if isinstance(body, (bytes, bytearray)):
            if body[:2] == b"\x1f\x8b":  # served without Content-Encoding: still gzip
                body = gzip.decompress(body)
            data = orjson.loads(body)
        else:
            data = dict(body)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object or null, got {type(data).__name__}")
        return Dictionary.from_json(data)
    except (ValueError, OSError, TypeError) as exc:
        raise ProtocolError(f"meta/dictionary is not a dictionary: {exc}") from None


@dataclass(frozen=True, slots=True)
class ModelState:
    """One ``meta/config`` + ``meta/dictionary``; replaced whole when the dictionary changes."""

    meta: ModelMeta
    dictionary: Dictionary | None
    names: tuple[str, ...]
    dtypes: dict[str, str]
    encoders: tuple[Encoder, ...]
    schema: KeySchema | None
    """``None`` when the model's answers are not cacheable."""
    dict_hash: int
    rounded: frozenset[str]
    """Float inputs with ``Precision`` (sent rounded, as Go's client does) or ``Wildcard``: sent
    as their encoded column, exactly the value keyed (a ``np.float32`` given for a float64
    input is keyed as its float64 value, so that is what the server must evaluate)."""

    @classmethod
    def build(cls, meta: ModelMeta, dictionary: Dictionary | None) -> ModelState:
        if not meta.inputs:
            raise ProtocolError("meta/config lists no Inputs")
        names = tuple(f.name for f in meta.inputs)
        dtypes = {f.name: dtype_of(f.data_type) for f in meta.inputs}
        precisions = {f.name: f.precision for f in meta.inputs}
        schema = None
        if meta.datastore is not None and dictionary is not None:
            candidate = KeySchema(meta.inputs, dictionary)
            # The server's rule: cacheable only when every input TensorFlow sees
            # (every non-auxiliary one) is part of the key.
            if {f.name for f in meta.inputs if not f.auxiliary} <= candidate.keyed:
                schema = candidate
        return cls(
            meta=meta,
            dictionary=dictionary,
            names=names,
            dtypes=dtypes,
            encoders=encoders_for(names, dtypes, precisions),
            schema=schema,
            dict_hash=dictionary.hash if dictionary is not None else 0,
            rounded=frozenset(f.name for f in meta.inputs
                              if (f.precision > 0 or f.wildcard) and dtypes[f.name] in _FLOATS),
        )


class Plan:
    """One predict in progress: its validated request, keys and the rows known so far."""

    __slots__ = ("columns", "keys", "misses", "request", "rows", "state")

    def __init__(self, state: ModelState, request: EvalRequest, columns: dict[str, np.ndarray],
                 keys: list[str] | None) -> None:
        self.state = state
        self.request = request
        self.columns = columns
        self.keys = keys
        self.rows: list[Any] = [None] * request.rows
        self.misses: list[int] = list(range(request.rows))


class ClientCore:
    """State shared by a client's calls: the model state, the cache, the refresh flag."""

    def __init__(self, model: str, options: ClientOptions) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model: expected a model ID, got {model!r}")
        self.model = model
        self.options = options
        self.state: ModelState | None = None
        self.cache: TieredCache | None = None
        self._memory: MRUCache | None = None
        self._refresh_lock = threading.Lock()
        self._refreshing = False

    # ------------------------------------------------------------- set-up

    def install(self, meta: ModelMeta, dictionary: Dictionary | None, cache: TieredCache | None) -> None:
        state = ModelState.build(meta, dictionary)
        self.cache = cache if state.schema is not None else None
        self._memory = self.cache.memory if self.cache is not None else None
        self.state = state

    def replace_state(self, meta: ModelMeta, dictionary: Dictionary | None) -> None:
        """A refreshed dictionary (and config). The cache tiers stay: every entry carries
        its dictionary hash, so the old entries simply stop matching."""
        state = ModelState.build(meta, dictionary)
        if self.cache is None:
            state = ModelState(state.meta, state.dictionary, state.names, state.dtypes, state.encoders, None,
                               state.dict_hash, state.rounded)
        self.state = state

    def forked(self) -> None:
        """In a forked child: a refresh the parent had running will never end here."""
        self._refresh_lock = threading.Lock()
        self._refreshing = False

    def begin_refresh(self) -> bool:
        """True for the one caller that should refresh now (never two at once)."""
        with self._refresh_lock:
            if self._refreshing:
                return False
            self._refreshing = True
            return True

    def end_refresh(self) -> None:
        with self._refresh_lock:
            self._refreshing = False

    @property
    def refreshing(self) -> bool:
        return self._refreshing

    # ------------------------------------------------------------- predict

    def fast(self, inputs: Any, into: type | None) -> Response | None:
        """One plain JSON row answered by the local tier: no encoding, no I/O. None otherwise."""
        memory = self._memory
        if memory is None or type(inputs) is not dict:
            return None
        state = self.state
        assert state is not None
        schema = state.schema
        if schema is None or len(inputs) != len(state.names):
            return None
        key = schema.key_if_plain(inputs)  # also checks every input's type and presence
        if key is None:
            return None
        value = memory.get(key, state.dict_hash)
        if type(value) is not bytes:
            return None
        self.cache.counters.hits_memory += 1  # type: ignore[union-attr]
        row = orjson.loads(value)
        return Response(STATUS_CACHED, row if into is None else row_converter(into)(row), state.dict_hash, 0.0, 1)

    def request_of(self, inputs: Any) -> EvalRequest:
        """A row (dict), rows (list of dicts), or wire-format columns with ``batch_size``."""
        if isinstance(inputs, EvalRequest):
            return inputs
        if isinstance(inputs, Mapping):
            if BATCH_SIZE in inputs or CACHE_KEY in inputs:
                # The wire format itself: parsed by the server's own parser.
                return parse_body(orjson.dumps(dict(inputs), option=_NUMPY))
            return EvalRequest(inputs, 0)
        if isinstance(inputs, (list, tuple)):
            return self._rows_request(inputs)
        raise RequestError(
            f"inputs: expected a dict (one row) or a list of dicts (rows), got {type(inputs).__name__}"
        )

    def _rows_request(self, rows: Sequence[Any]) -> EvalRequest:
        state = self.state
        assert state is not None
        if not rows:
            raise RequestError("inputs: an empty list of rows")
        names = state.names
        # The common case costs one pass per input; anything off is diagnosed row by row below.
        try:
            columns = {name: [row[name] for row in rows] for name in names}
            exact = set(map(len, rows)) == {len(names)}
        except (KeyError, TypeError, IndexError):
            exact = False
        if not exact:
            for i, row in enumerate(rows):
                if not isinstance(row, Mapping):
                    raise RequestError(f"inputs[{i}]: expected a dict of inputs, got {type(row).__name__}")
                check_names(row, state.dtypes)
            columns = {name: [row[name] for row in rows] for name in names}
        return EvalRequest(columns, len(rows))

    def plan(self, request: EvalRequest) -> Plan:
        """Validate and encode (the server's code and messages), then key every row."""
        state = self.state
        assert state is not None
        columns = encode_columns(request, state.dtypes, state.encoders)
        keys = state.schema.keys(columns, request.rows) if state.schema is not None else None
        return Plan(state, request, columns, keys)

    def absorb(self, plan: Plan, found: Sequence[bytes | None]) -> None:
        """Take the cache's hits; ``plan.misses`` keeps the rows still to ask for."""
        if len(found) == len(plan.rows) and all(found):
            # All hit: one parse for the whole batch.
            plan.rows = orjson.loads(b"[" + b",".join(found) + b"]")  # type: ignore[arg-type]
            plan.misses = []
            return
        misses = []
        rows = plan.rows
        for i, value in enumerate(found):
            if value is None:
                misses.append(i)
            else:
                rows[i] = orjson.loads(value)
        plan.misses = misses

    def cached(self, plan: Plan, into: type | None) -> Response:
        return Response(STATUS_CACHED, self._data(plan, into), plan.state.dict_hash, 0.0, len(plan.rows))

    def body(self, plan: Plan) -> bytes:
        """The eval body for the rows that missed: ``batch_size`` first (Go servers need it
        first), then the inputs in ``meta/config`` order, then Go's ``cache_key``."""
        state, request, keys = plan.state, plan.request, plan.keys
        values = request.values
        if not request.batch:
            out: dict[str, Any] = {name: values[name] for name in state.names}
            for name in state.rounded:
                out[name] = plan.columns[name][0]
            if keys is not None:
                out[CACHE_KEY] = keys[0]
            return orjson.dumps(out, option=_NUMPY)
        misses = plan.misses
        every = len(misses) == request.rows
        index = None if every else np.asarray(misses, dtype=np.intp)
        out = {BATCH_SIZE: len(misses)}
        for name in state.names:
            if name in state.rounded:
                column = plan.columns[name]
                out[name] = column if index is None else column[index]
                continue
            value = values[name]
            out[name] = value if every or len(value) == 1 else [value[i] for i in misses]
        if keys is not None:
            out[CACHE_KEY] = keys if every else [keys[i] for i in misses]
        return orjson.dumps(out, option=_NUMPY)

    def finish(self, plan: Plan, status: int, content: bytes, into: type | None) -> tuple[Response, bool]:
        """Merge the server's rows, write them back under their own keys.

        Returns the response and whether the dictionary must be refreshed (the
        server answered under another dictionary hash).
        """
        if status != 200:
            raise error_from_response(status, content)
        try:
            payload = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"eval answer is not JSON: {exc}: {content[:200]!r}") from None
        if not isinstance(payload, dict) or payload.get("status") != STATUS_OK:
            raise ProtocolError(f"eval answer is not ok: {content[:200]!r}")
        data = payload.get("data")
        misses = plan.misses
        if plan.request.batch:
            if not isinstance(data, list) or len(data) != len(misses):
                got = len(data) if isinstance(data, list) else type(data).__name__
                raise ProtocolError(f"eval answer has {got} rows for {len(misses)} sent")
            computed = data
        else:
            computed = [data]
        rows = plan.rows
        for i, row in zip(misses, computed):
            rows[i] = row
        dict_hash = int(payload.get("dictHash") or 0)
        state = plan.state
        if plan.keys is not None and dict_hash == state.dict_hash:
            self._write_back(plan.keys, misses, computed, dict_hash)
        service_time = (payload.get("serviceTimeMcs") or 0) / 1e6
        response = Response(STATUS_OK, self._data(plan, into), dict_hash, service_time,
                            len(rows) - len(misses))
        # Against the current state, not the plan's: an answer that raced a refresh
        # already finished must not start another one.
        current = self.state
        return response, current is not None and dict_hash != current.dict_hash

    def _write_back(self, keys: list[str], misses: list[int], computed: list[Any], dict_hash: int) -> None:
        """Each computed row under its own row's key (the Go client can mismatch them on
        partial hits; here ``misses[j]`` is the row of ``computed[j]``, always)."""
        cache = self.cache
        if cache is None:
            return
        if self.options.write_back_remote:
            cache.put_many([(keys[i], row, orjson.dumps(row)) for i, row in zip(misses, computed)], dict_hash)
            return
        memory = self._memory
        if memory is not None:
            ttl_ms = cache.ttl_ms
            for i, row in zip(misses, computed):
                memory.put(keys[i], orjson.dumps(row), dict_hash, ttl_ms)

    def _data(self, plan: Plan, into: type | None) -> Any:
        rows = plan.rows
        if into is not None:
            convert = row_converter(into)
            rows = [convert(row) for row in rows]
        return rows if plan.request.batch else rows[0]
