"""Find each categorical input's vocabulary in a loaded SavedModel (docs/differences-from-go.md #14).

Why this matters: a cache key maps every out-of-vocabulary value to ``[UNK]``
(ints to ``0``). That is only correct if the model itself cannot tell those
values apart, i.e. if the vocabulary is exactly the key set of the table the
input is looked up in. So the table is found from the input, not guessed.

Two ways, in this order:

1. **Follow the graph** (Keras 3 / TF 2.16+, and any TF2 model): start at the
   input's placeholder in the ``serving_default`` function, walk forward through
   ops that hand values on unchanged (Identity, Reshape, widening integer Cast, ...) and
   into nested function calls, up to ``LookupTableFindV2`` ops that take the input
   as their *keys*. Each such op's table handle is walked back (through function
   arguments and Identities) to a placeholder of the serving function; that
   placeholder is a *capture*, and the captured tensor is the live table, which
   ``LookupTableExportV2`` exports. Keras 3 saves no export op, so this is the
   only way for its models.
2. **Go's naming convention** when the graph gives nothing: an
   op named ``<input>_...LookupTableExportV2``. Unlike Go's first-prefix match, an
   op belongs to the *longest* input name that prefixes it (``sa_b_lookup...``
   belongs to input ``sa_b``, not ``sa``). Ops inside the serving function are
   exported from their captured table; ops at the MetaGraph's top level (the
   saver ops of Keras 2 era models, where Go finds them) are run in a TF1 session
   on the model's folder, exactly as Go runs them.

What the exported keys contain is whatever the table stores. Observed with
Keras 3.15 / TF 2.21: ``StringLookup(vocabulary=[a,b,c])`` stores exactly
``a,b,c`` (no ``[UNK]``, no mask token: OOV is the table's default value);
``IntegerLookup(vocabulary=[10,20,30])`` stores exactly ``10,20,30``; the
same holds for tf_keras 2.21 (Keras 2) layers, given a vocabulary or adapted.

If the input's values also reach other ops (a mask-token ``Equal``, the hash
of extra OOV buckets, a numeric use), the model may tell OOV values apart and
one ``[UNK]`` key would merge them: that is logged as a warning, not refused,
because Go accepts such models too.

A wrong ``Tkeys``/``Tvalues`` on an export aborts the whole process (a TF CHECK
failure, not an exception), so dtypes are always taken from the graph op that
reads the table, never guessed.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mly.common.dictionary import Layer
from mly.model.saved_model import SERVING_KEY, saved_model_source

__all__ = ["extract_vocabularies"]

log = logging.getLogger(__name__)

FIND_OPS = frozenset({"LookupTableFindV2", "LookupTableFind"})
EXPORT_OPS = frozenset({"LookupTableExportV2"})
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
# Ops that pass each value on unchanged (only shape or layout changes), so "the
# value is in the table" means the same after them as before.
PASS_THROUGH = frozenset(
    {
        "Identity", "IdentityN", "Snapshot", "StopGradient", "PreventGradient", "EnsureShape",
        "Reshape", "ExpandDims", "Squeeze", "StridedSlice", "Slice", "PlaceholderWithDefault",
    }
)
# Ops that read only the shape, never the values: harmless for keys.
SHAPE_ONLY = frozenset({"Shape", "ShapeN", "Size", "Rank"})
_MAX_DEPTH = 64


def _parse_ref(ref: str) -> tuple[str, int]:
    """``node`` / ``node:k`` (GraphDef) or ``node:out_arg:k`` (FunctionDef) -> (node, k)."""
    parts = ref.split(":")
    return parts[0], int(parts[-1]) if len(parts) > 1 else 0


def _data_inputs(node: Any) -> list[str]:
    return [ref for ref in node.input if not ref.startswith("^")]


class _Body:
    """One graph body (the serving graph or a library function) indexed by producer."""

    def __init__(self, nodes: Sequence[Any], args: Sequence[str] = (), rets: Sequence[str] = ()) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.order = list(nodes)
        self.args = list(args)
        self.rets = list(rets)  # refs, in output order
        self.consumers: dict[str, list[tuple[Any, int, int]]] = defaultdict(list)
        for node in nodes:
            for pos, ref in enumerate(_data_inputs(node)):
                name, idx = _parse_ref(ref)
                self.consumers[name].append((node, pos, idx))


@dataclass(eq=False)
class _Frame:
    """A body as reached through a chain of call ops (the call stack matters for arguments)."""

    body: _Body
    parent: _Frame | None = None
    call: Any = None
    path: tuple[str, ...] = ()


@dataclass
class _Graph:
    """The serving function's graph: its body, the function library and its captures."""

    function: Any
    library: dict[str, Any]
    top: _Frame
    captures: dict[str, Any]  # top-level placeholder name -> captured (live) tensor
    outputs: frozenset[str]
    placeholders: dict[str, str]  # signature input key -> top-level placeholder name
    _bodies: dict[str, _Body] = field(default_factory=dict)

    def callee(self, node: Any) -> str | None:
        if node.op in CALL_OPS and "f" in node.attr:
            name = node.attr["f"].func.name
            return name if name in self.library else None
        return node.op if node.op in self.library else None

    def enter(self, frame: _Frame, call: Any, fname: str) -> _Frame | None:
        if len(frame.path) >= _MAX_DEPTH:
            return None
        body = self._bodies.get(fname)
        if body is None:
            fdef = self.library[fname]
            outputs = [a.name for a in fdef.signature.output_arg]
            body = _Body(fdef.node_def, [a.name for a in fdef.signature.input_arg], [fdef.ret[o] for o in outputs])
            self._bodies[fname] = body
        return _Frame(body, frame, call, (*frame.path, call.name))

    def frames(self) -> Iterator[_Frame]:
        """Every body reachable from the serving graph, each with its call stack."""
        stack = [self.top]
        while stack:
            frame = stack.pop()
            yield frame
            for node in frame.body.order:
                fname = self.callee(node)
                child = self.enter(frame, node, fname) if fname else None
                if child is not None:
                    stack.append(child)


def _serving_graph(loaded: Any) -> _Graph:
    import tensorflow as tf

    function = loaded.signatures[SERVING_KEY]
    graph_def = function.graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    # The signature's flat inputs are its keyword specs in key order; the
    # function's first inputs are their placeholders in that same order.
    _, kwargs = function.structured_input_signature
    keys = sorted(kwargs)
    placeholders = {key: function.inputs[i].op.name for i, key in enumerate(keys)}
    for i, key in enumerate(keys):
        if function.inputs[i].dtype != kwargs[key].dtype:  # the ordering assumption broke: be loud
            raise ValueError(f"cannot map signature input {key!r} to its placeholder in the serving graph")
    captures = {internal.op.name: external for external, internal in function.graph.captures}
    outputs = frozenset(t.op.name for t in tf.nest.flatten(function.outputs))
    return _Graph(function, library, _Frame(_Body(graph_def.node)), captures, outputs, placeholders)


def _cast_kind(node: Any) -> str:
    """``"keeps"`` when the Cast keeps every value apart (same type, or an integer type
    that holds the whole source range), ``"narrows"`` for an integer Cast that wraps some
    values onto others (int64 -> int32), ``"other"`` otherwise (int <-> float: a numeric use)."""
    import tensorflow as tf

    src = tf.dtypes.as_dtype(node.attr["SrcT"].type)
    dst = tf.dtypes.as_dtype(node.attr["DstT"].type)
    if src == dst:
        return "keeps"
    if src.is_integer and dst.is_integer:
        return "keeps" if dst.min <= src.min and dst.max >= src.max else "narrows"
    return "other"


class NarrowingCastError(LookupError):
    """The input's values are cast to a narrower integer type on their way to the table:
    values outside the table's range wrap onto ids inside it, so the table's keys are not
    the input's vocabulary."""


def _dtype_name(node: Any, attr: str) -> str:
    import tensorflow as tf

    return str(tf.dtypes.as_dtype(node.attr[attr].type).name)


def _follow_input(graph: _Graph, placeholder: str) -> tuple[list[tuple[_Frame, Any]], set[str]]:
    """Lookup ops reached from ``placeholder`` as keys, and the other op types its values reach."""
    hits: list[tuple[_Frame, Any]] = []
    escapes: set[str] = set()
    seen: set[tuple[tuple[str, ...], str, int | None]] = set()
    stack: list[tuple[_Frame, str, int | None]] = [(graph.top, placeholder, None)]
    while stack:
        frame, producer, out_idx = stack.pop()
        if (frame.path, producer, out_idx) in seen:
            continue
        seen.add((frame.path, producer, out_idx))
        for node, pos, idx in frame.body.consumers.get(producer, ()):
            if out_idx is not None and idx != out_idx:
                continue  # another output of a function call
            fname = graph.callee(node)
            if node.op in FIND_OPS:
                if pos == 1:  # the keys input; stop here, what follows are ids
                    hits.append((frame, node))
                else:
                    escapes.add(node.op)
            elif fname is not None:
                child = graph.enter(frame, node, fname)
                if child is None:
                    escapes.add(node.op)
                else:
                    stack.append((child, child.body.args[pos], None))
            elif node.op == "Cast" and (kind := _cast_kind(node)) != "other":
                if kind == "narrows":
                    raise NarrowingCastError(
                        f"op {node.name!r} casts {_dtype_name(node, 'SrcT')} to {_dtype_name(node, 'DstT')}"
                    )
                stack.append((frame, node.name, None))
            elif node.op in PASS_THROUGH:
                stack.append((frame, node.name, None))
            elif node.op not in SHAPE_ONLY:
                escapes.add(node.op)
        if frame.parent is not None:
            # Returned from a function: carry on at the caller's matching output.
            for i, ref in enumerate(frame.body.rets):
                name, idx = _parse_ref(ref)
                if name == producer and (out_idx is None or idx == out_idx):
                    stack.append((frame.parent, frame.call.name, i))
        elif producer in graph.outputs:
            escapes.add("a signature output")
    return hits, escapes


def _resolve_handle(graph: _Graph, frame: _Frame, ref: str) -> Any | None:
    """Walk a table-handle input back to the serving function's capture (the live table)."""
    for _ in range(10_000):
        name, idx = _parse_ref(ref)
        body = frame.body
        if frame.parent is not None and name in body.args:
            # A function argument: continue with what the caller passed in.
            ref = _data_inputs(frame.call)[body.args.index(name)]
            frame = frame.parent
            continue
        node = body.nodes.get(name)
        if node is None:
            return None
        if node.op == "Identity":
            ref = _data_inputs(node)[0]
        elif node.op == "IdentityN":
            ref = _data_inputs(node)[idx]
        elif frame.parent is None and node.op == "Placeholder":
            return graph.captures.get(name)
        elif (fname := graph.callee(node)) is not None:
            child = graph.enter(frame, node, fname)
            if child is None or idx >= len(child.body.rets):
                return None
            ref, frame = child.body.rets[idx], child
        else:
            return None  # e.g. a table created inside the function: not reachable from outside
    return None


def _export_keys(handle: Any, key_dtype: Any, value_dtype: Any) -> list[Any]:
    import tensorflow as tf

    keys, _ = tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=key_dtype, Tvalues=value_dtype)
    return keys.numpy().reshape(-1).tolist()


def _layer(name: str, keys: list[Any], source: str) -> Layer:
    if not keys or isinstance(keys[0], bytes):
        # Invalid UTF-8 cannot arrive in a JSON request anyway; keep the entry visible.
        return Layer.of_strings(name, (k.decode("utf-8", "replace") for k in keys))
    if isinstance(keys[0], int):
        return Layer.of_ints(name, keys)
    raise ValueError(f"input {name!r}: the lookup table ({source}) has {type(keys[0]).__name__} keys")


def _by_graph(graph: _Graph, name: str) -> Layer | None:
    hits, escapes = _follow_input(graph, graph.placeholders[name])
    if not hits:
        return None
    keys: list[Any] = []
    kinds: set[type] = set()
    for frame, node in hits:
        handle = _resolve_handle(graph, frame, node.input[0])
        if handle is None:
            log.warning("input %r: the table of lookup op %r is not a capture of the serving function", name, node.name)
            return None
        found = _export_keys(handle, node.attr["Tin"].type, node.attr["Tout"].type)
        kinds.update(type(k) for k in found)
        keys.extend(found)
    if len(kinds) > 1:
        raise ValueError(f"input {name!r} is looked up in tables with different key types")
    if escapes:
        log.warning(
            "input %r is also used outside its lookup table (%s): out-of-vocabulary values share one "
            "cache key, which is right only if the model treats them alike; mark it Wildcard if not",
            name, ", ".join(sorted(escapes)),
        )
    # Several tables (e.g. two lookup layers on one input): the union keeps every
    # value that any of them tells apart, so keys stay correct.
    return _layer(name, keys, "graph")


def _owner(op_name: str, inputs: Sequence[str]) -> str | None:
    """The input an export op belongs to by Go's naming: the longest ``<input>_`` prefix."""
    owners = [n for n in inputs if op_name.startswith(n + "_")]
    return max(owners, key=len) if owners else None


def _export_ops_by_name(graph: _Graph, inputs: Sequence[str]) -> dict[str, tuple[_Frame, Any]]:
    found: dict[str, tuple[_Frame, Any]] = {}
    for frame in graph.frames():
        for node in frame.body.order:
            if node.op in EXPORT_OPS and node.name.endswith("LookupTableExportV2"):
                owner = _owner(node.name, inputs)
                if owner is not None:
                    found.setdefault(owner, (frame, node))
    return found


def _meta_graph_export_ops(path: str, tags: Sequence[str], inputs: Sequence[str]) -> dict[str, str]:
    """Go-convention export ops at the MetaGraph's top level (where Go looks)."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(pb):
        return {}
    model = saved_model_pb2.SavedModel()
    with open(pb, "rb") as fh:
        model.ParseFromString(fh.read())
    wanted = set(tags)
    found: dict[str, str] = {}
    for meta in model.meta_graphs:
        if wanted and set(meta.meta_info_def.tags) != wanted:
            continue
        for node in meta.graph_def.node:
            if node.op in EXPORT_OPS and node.name.endswith("LookupTableExportV2"):
                owner = _owner(node.name, inputs)
                if owner is not None:
                    found.setdefault(owner, node.name)
        break
    return found


def _run_in_session(path: str, tags: Sequence[str], op_names: dict[str, str]) -> dict[str, list[Any]]:
    """Run top-level export ops the way Go does: load the MetaGraph in a session, fetch output 0."""
    import tensorflow as tf

    graph = tf.Graph()
    tf_log = tf.get_logger()
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # the TF1 loader's deprecation notice would only confuse operators
    try:
        with tf.compat.v1.Session(graph=graph) as session:
            tf.compat.v1.saved_model.loader.load(session, list(tags), path)
            fetches = {name: graph.get_operation_by_name(op).outputs[0] for name, op in op_names.items()}
            values = session.run(fetches)
    finally:
        tf_log.setLevel(level)
    return {name: value.reshape(-1).tolist() for name, value in values.items()}


def extract_vocabularies(loaded: Any, input_names: Sequence[str]) -> dict[str, Layer | None]:
    """One ``Layer`` per named input; ``LookupError`` naming the first input without a table.

    ``None`` for an input whose values reach a table through a narrowing integer cast:
    no vocabulary describes it, so it must be keyed by its raw value (as a wildcard).
    """
    graph = _serving_graph(loaded)
    for name in input_names:
        if name not in graph.placeholders:
            raise LookupError(f"input {name!r} is not an input of the model's {SERVING_KEY} signature")
    all_inputs = sorted(set(graph.placeholders) | set(input_names))

    layers: dict[str, Layer | None] = {}
    pending: list[str] = []
    for name in input_names:
        try:
            layer = _by_graph(graph, name)
        except NarrowingCastError as exc:
            log.warning("input %r: %s, so values outside its range share ids with values inside it; "
                        "it is keyed by its raw value (as Wildcard: true)", name, exc)
            layers[name] = None
            continue
        if layer is not None:
            layers[name] = layer
        else:
            pending.append(name)

    if pending:
        named = _export_ops_by_name(graph, all_inputs)
        for name in list(pending):
            if name in named:
                frame, node = named[name]
                handle = _resolve_handle(graph, frame, node.input[0])
                if handle is not None:
                    keys = _export_keys(handle, node.attr["Tkeys"].type, node.attr["Tvalues"].type)
                    layers[name] = _layer(name, keys, node.name)
                    pending.remove(name)
    if pending and (source := saved_model_source(loaded)) is not None:
        top_level = _meta_graph_export_ops(source[0], source[1], all_inputs)
        runnable = {name: top_level[name] for name in pending if name in top_level}
        if runnable:
            for name, keys in _run_in_session(source[0], source[1], runnable).items():
                layers[name] = _layer(name, keys, runnable[name])
                pending.remove(name)
    if pending:
        name = pending[0]
        raise LookupError(f"input {name!r} has no lookup table; mark it Wildcard or give Precision")
    return {name: layers[name] for name in input_names}
