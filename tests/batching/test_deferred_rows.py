"""Deferred single rows: built together with their batch, each bad row answered with its own error.

``run`` here is a plain function over numpy columns (the batcher's contract), recording
every call; the builder is the real one the server uses (``encode_rows`` over the native
encoder), so the columns compared are the ones TensorFlow would get.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from mly.batching.deferred import DeferredRow
from mly.batching.execution import execute_batch
from mly.common.request import DTYPE_CODES, EvalRequest, encode_columns, encode_rows, encoders_for
from mly.errors import InputError

DTYPES = {"s": "string", "i": "int64", "f": "float32"}
ENCODERS = encoders_for(["f", "i", "s"], DTYPES, {"f": 2})
BUILD = functools.partial(encode_rows, encoders=ENCODERS)


class Recorder:
    """Doubles ``i``, echoes ``s`` and ``f``; remembers the columns of every call."""

    def __init__(self, fail_when: Any = None) -> None:
        self.calls: list[dict[str, list[Any]]] = []
        self.fail_when = fail_when

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append({name: column.tolist() for name, column in feeds.items()})
        if self.fail_when is not None and self.fail_when(feeds):
            raise ValueError("model failed")
        return {"twice": feeds["i"] * 2, "s": feeds["s"], "f": feeds["f"]}


def row(i: int, s: str = "a", f: float = 1.005) -> dict[str, Any]:
    return {"s": s, "i": i, "f": f}


def alone(values: dict[str, Any]) -> dict[str, list[Any]]:
    """The columns of one request encoded on its own, the way a non-deferred request is."""
    columns = encode_columns(EvalRequest(values), DTYPES, ENCODERS)
    return {name: columns[name].tolist() for name in ("f", "i", "s")}


def test_deferred_rows_are_built_together_into_the_columns_of_one_call() -> None:
    rows = [row(1, "a", 1.005), row(2, "bb", -2.675), row(3, "", 3)]
    run = Recorder()
    results, timings, failed = execute_batch(run, [(DeferredRow(r, BUILD), 1) for r in rows])
    assert len(run.calls) == 1 and not failed and [t[0] for t in timings] == [3]
    for name in ("f", "i", "s"):  # the same values as three requests encoded alone, in order
        assert run.calls[0][name] == [alone(r)[name][0] for r in rows]
    assert [r["twice"].tolist() for r in results] == [[2], [4], [6]]
    assert [r["s"].tolist() for r in results] == [["a"], ["bb"], [""]]


def test_a_bad_row_gets_the_error_it_would_get_alone_and_the_others_run_in_one_call() -> None:
    rows = [row(1), row(2, s=7), row(3), row(4, f=float("1e39"))]  # type: ignore[arg-type]
    run = Recorder()
    results, _, failed = execute_batch(run, [(DeferredRow(r, BUILD), 1) for r in rows])
    assert not failed
    assert [r["twice"].tolist() for r in (results[0], results[2])] == [[2], [6]]
    for bad, values in ((results[1], rows[1]), (results[3], rows[3])):
        assert isinstance(bad, InputError) and bad.row is None
        with pytest.raises(InputError) as alone_error:
            encode_columns(EvalRequest(values), DTYPES, ENCODERS)
        assert str(bad) == str(alone_error.value) and bad.field == alone_error.value.field
    assert str(results[1]) == "s: expected string, got int 7"
    assert [call["i"] for call in run.calls] == [[1, 3]]


def test_deferred_rows_mix_with_requests_that_bring_their_columns() -> None:
    columns = encode_columns(EvalRequest({"s": ["x", "y"], "i": [10, 20], "f": [0.5, 0.25]}, 2), DTYPES, ENCODERS)
    feeds = {name: columns[name] for name in ("f", "i", "s")}
    run = Recorder()
    results, _, _ = execute_batch(run, [(DeferredRow(row(1), BUILD), 1), (feeds, 2), (DeferredRow(row(2), BUILD), 1)])
    assert [call["i"] for call in run.calls] == [[1, 10, 20, 2]]
    assert [r["twice"].tolist() for r in results] == [[2], [20, 40], [4]]


def test_a_failed_merged_call_is_rerun_row_by_row() -> None:
    run = Recorder(fail_when=lambda feeds: (feeds["i"] == 13).any())
    rows = [row(1), row(13), row(2)]
    results, timings, failed = execute_batch(run, [(DeferredRow(r, BUILD), 1) for r in rows])
    assert failed
    assert [call["i"] for call in run.calls] == [[1, 13, 2], [1], [13], [2]]
    assert results[0]["twice"].tolist() == [2] and results[2]["twice"].tolist() == [4]
    assert isinstance(results[1], ValueError)
    assert [t[0] for t in timings] == [1, 1]  # failed calls are not timed


def test_rows_of_two_builders_are_built_alone_then_concatenated() -> None:
    other = functools.partial(encode_rows, encoders=ENCODERS)  # another generation's builder
    run = Recorder()
    results, _, _ = execute_batch(run, [(DeferredRow(row(1), BUILD), 1), (DeferredRow(row(2), other), 1)])
    assert [call["i"] for call in run.calls] == [[1, 2]]
    assert [r["twice"].tolist() for r in results] == [[2], [4]]


def test_a_single_deferred_row_and_its_columns_as_a_mapping() -> None:
    deferred = DeferredRow(row(5, "z", 0.125), BUILD)
    run = Recorder()
    [result], _, _ = execute_batch(run, [(deferred, 1)])
    assert result["twice"].tolist() == [10]
    # A transformer reading its inputs gets the same columns the model got.
    assert {name: deferred[name].tolist() for name in deferred} == alone(row(5, "z", 0.125)) == run.calls[0]
    assert len(deferred) == 3


def test_encode_rows_equals_encoding_each_row_alone() -> None:
    rng = np.random.default_rng(3)
    rows = [row(int(rng.integers(-(2**40), 2**40)), f"v{k}", float(rng.normal() * 100)) for k in range(50)]
    together = encode_rows(rows, ENCODERS)
    single = encode_columns(EvalRequest(rows[0]), DTYPES, ENCODERS)
    for name, code, _ in ENCODERS:
        assert together[name].tolist() == [alone(r)[name][0] for r in rows]
        assert together[name].dtype == single[name].dtype
        assert (code == DTYPE_CODES["float32"]) == (single[name].dtype == np.float32)
