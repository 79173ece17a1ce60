"""Request corpora for load tests: rows drawn from a model's own inputs and vocabularies.

A corpus is built from what a server publishes (``meta/config`` + ``meta/dictionary``,
so it works against any mly or Go mly deployment) or from the benchmark model's known
vocabularies (``bench/ctr_model.py``, no server needed). Each categorical value is
out of vocabulary with probability ``oov`` (5% by default), as production traffic is;
floats are drawn on the input's precision grid when it has one.

Bodies are mly's wire format: one row is an object of scalars, a batch is an object
of equal-length arrays (columns) with ``batch_size``. ``write_lines`` stores one body per line for wrk's
Lua script (JSON bodies never contain a raw newline).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

Row = dict[str, Any]


@dataclass(frozen=True)
class Field:
    """One model input as a load generator needs it."""

    name: str
    dtype: str  # string | int64 | int32 | float32 | float64 | bool
    vocab: tuple[Any, ...] | None = None
    precision: int = 0


_DTYPES = {"": "string", "string": "string", "int": "int64", "int64": "int64", "int32": "int32",
           "float": "float32", "float32": "float32", "float64": "float64", "bool": "bool"}


def fields_from_meta(config: dict[str, Any], dictionary: dict[str, Any] | None) -> list[Field]:
    """Fields of a served model from its ``meta/config`` and ``meta/dictionary`` JSON.

    Auxiliary inputs are skipped (they are not fed to the model); an input without a
    dictionary layer gets values from a small made-up set so keys still repeat.
    """
    layers = {layer["Name"]: layer for layer in (dictionary or {}).get("Layers") or []}
    fields: list[Field] = []
    for spec in config.get("Inputs") or []:
        if spec.get("Auxiliary"):
            continue
        name = spec["Name"]
        layer = layers.get(name) or {}
        vocab = layer.get("Strings") or layer.get("Ints")
        fields.append(Field(name, _DTYPES.get(str(spec.get("DataType", "")).lower(), "string"),
                            tuple(vocab) if vocab else None, int(spec.get("Precision") or 0)))
    if not fields:
        raise ValueError("meta/config lists no inputs")
    return fields


def ctr_fields() -> list[Field]:
    """Fields of the benchmark model, without asking a server."""
    from ctr_model import FLOAT_INPUT, FLOAT_PRECISION, VOCABULARIES

    fields = [Field(name, "string" if isinstance(vocab[0], str) else "int64", tuple(vocab))
              for name, vocab in VOCABULARIES.items()]
    return [*fields, Field(FLOAT_INPUT, "float32", None, FLOAT_PRECISION)]


class Corpus:
    """Draws rows for a model, reproducibly from ``seed``."""

    def __init__(self, fields: Sequence[Field], *, oov: float = 0.05, seed: int = 1) -> None:
        if not 0.0 <= oov <= 1.0:
            raise ValueError(f"oov share must be in [0, 1], got {oov}")
        self.fields = list(fields)
        self.oov = oov
        self.rng = random.Random(seed)

    def value(self, field: Field) -> Any:
        rng = self.rng
        if field.dtype == "bool":
            return rng.random() < 0.5
        if field.dtype.startswith("float"):
            if field.precision:
                scale = 10**field.precision
                return rng.randrange(1, 5 * scale) / scale  # 0.01 .. 4.99 on the key grid
            return round(rng.uniform(0.0, 5.0), 6)
        oov = rng.random() < self.oov
        if field.vocab and not oov:
            return rng.choice(field.vocab)
        if field.dtype == "string":
            return f"oov-{rng.randrange(1 << 30)}" if oov or field.vocab else f"v{rng.randrange(100)}"
        # ints: past the vocabulary's top, inside the dtype's range
        top = max(field.vocab) if field.vocab else 0
        return top + 1 + rng.randrange(1 << 20) if oov or field.vocab else rng.randrange(100)

    def row(self) -> Row:
        return {f.name: self.value(f) for f in self.fields}

    def rows(self, n: int) -> list[Row]:
        return [self.row() for _ in range(n)]


def single_body(row: Row) -> bytes:
    return orjson.dumps(row)


def batch_body(rows: Sequence[Row]) -> bytes:
    """Columns plus ``batch_size``, as mly and Go mly take a batch."""
    names = list(rows[0])
    return orjson.dumps({"batch_size": len(rows), **{name: [r[name] for r in rows] for name in names}})


def hot_batches(pool: Sequence[Row], count: int, size: int, seed: int = 2) -> list[bytes]:
    """``count`` distinct batch bodies of ``size`` rows each, every row taken from ``pool``,
    so once the pool is cached a per-row cache answers every row of every batch."""
    rng = random.Random(seed)
    return [batch_body(rng.sample(list(pool), size)) for _ in range(count)]


@dataclass(frozen=True)
class ZipfBatches:
    """Candidate batches as a page asks for them: rows repeat across requests with a long-tailed
    popularity, whole bodies never do. Only a per-row cache can hit on such traffic; an
    exact-body cache (or a response memo) never does.

    ``universe`` distinct rows are drawn once (``oov`` share of out-of-vocabulary values); the
    row of popularity rank ``r`` (from 1) is then picked with weight ``1 / r ** exponent``.
    Each body holds ``rows_per_body`` distinct rows and no body is sent twice."""

    rows_per_body: int = 32
    universe: int = 200_000
    exponent: float = 1.0
    oov: float = 0.05
    seed: int = 4

    def __post_init__(self) -> None:
        if self.rows_per_body < 1 or self.universe < self.rows_per_body + 1:
            raise ValueError(f"need 1 <= rows_per_body < universe, got {self.rows_per_body} and {self.universe}")
        if self.exponent < 0:
            raise ValueError(f"the Zipf exponent must be >= 0, got {self.exponent}")

    def universe_rows(self, fields: Sequence[Field]) -> list[Row]:
        """The distinct rows, most popular first (a draw that repeats an earlier row is skipped)."""
        corpus = Corpus(fields, oov=self.oov, seed=self.seed)
        seen: set[tuple[Any, ...]] = set()
        rows: list[Row] = []
        for _ in range(self.universe * 10):
            row = corpus.row()
            ident = tuple(row.values())
            if ident not in seen:
                seen.add(ident)
                rows.append(row)
                if len(rows) == self.universe:
                    return rows
        raise ValueError(f"the fields cannot give {self.universe:,} distinct rows")

    def batches(self, fields: Sequence[Field], count: int) -> Iterator[list[Row]]:
        """``count`` batches of distinct rows, no two batches the same (in order)."""
        rows = self.universe_rows(fields)
        cum = list(itertools.accumulate(1.0 / (rank**self.exponent) for rank in range(1, len(rows) + 1)))
        rng = random.Random(self.seed + 1)
        indices = range(len(rows))
        sent: set[tuple[int, ...]] = set()
        while len(sent) < count:
            picked: dict[int, None] = {}  # insertion-ordered: the draw order is the body's row order
            while len(picked) < self.rows_per_body:
                for i in rng.choices(indices, cum_weights=cum, k=self.rows_per_body - len(picked)):
                    picked[i] = None
            ident = tuple(itertools.islice(picked, self.rows_per_body))
            if ident in sent:
                continue
            sent.add(ident)
            yield [rows[i] for i in ident]


def write_lines(path: str | Path, bodies: Iterable[bytes]) -> Path:
    out = Path(path)
    with out.open("wb") as fh:
        for b in bodies:
            if b"\n" in b:
                raise ValueError("a body holds a raw newline; one body per line cannot hold it")
            fh.write(b + b"\n")
    return out
