"""The sync client against a real server: local hits, partial batches, typed results,
validation before any request, errors from the server, options."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import numpy as np
import orjson
import pytest
from model_builders import expected_keras_lookup

import mly.client
from mly.client import CacheScope, Client, ClientOptions, Message
from mly.client.errors import (
    BatchTooLargeError,
    InputError,
    MissingFieldError,
    NotFoundError,
    PayloadTooLargeError,
    TransportError,
    UnknownFieldError,
)

MODEL = "k"


@dataclasses.dataclass
class Prediction:
    score: float
    label_id: int


class Scored(NamedTuple):
    label_id: int
    score: float
    vec: list[float]


@pytest.fixture
def client(cserver: Any) -> Iterator[Client]:
    with Client(MODEL, hosts=[cserver.address]) as c:
        yield c


def row(sa: str = "a", sl: str = "b", i1: int = 20, fl: float = 1.25) -> dict:
    return {"sa": sa, "sl": sl, "i1": i1, "fl": fl}


def expected(r: dict) -> dict:
    out = expected_keras_lookup([r["sa"]], [r["sl"]], [r["i1"]], [round(r["fl"], 2)])
    return {"label_id": int(out["label_id"][0, 0]), "score": float(out["score"][0, 0]), "vec": out["vec"][0].tolist()}


def close_to(got: dict, want: dict) -> bool:
    return got["label_id"] == want["label_id"] and np.allclose(got["score"], want["score"]) and np.allclose(
        got["vec"], want["vec"])


def test_public_names_are_sorted_and_complete() -> None:
    names = mly.client.__all__
    assert names == sorted(names)
    # Names are imported on first use (tests/client/test_import.py): each export has a home, and only they.
    assert set(names) == set(mly.client._HOME)


def test_fetches_config_and_dictionary_and_keys_like_the_server(cserver: Any, client: Client) -> None:
    generation = cserver.registry.get(MODEL).current
    assert client.dict_hash == generation.dict_hash != 0
    assert client.cache is not None and client.cache.memory is not None
    r = row(sa="zz", fl=3.14159)  # out of vocabulary and rounded: the same key on both sides
    assert client._core.state.schema.key(r) == generation.key_schema.key(r)  # type: ignore[union-attr]


def test_a_local_hit_makes_no_request(cserver: Any, client: Client) -> None:
    r = row(sa="c", i1=30, fl=2.5)
    first = client.predict(r)
    assert first.status == "ok" and first.cached_rows == 0 and first.service_time > 0
    assert close_to(first.data, expected(r))
    before = cserver.counter.evals
    again = client.predict(r)
    assert cserver.counter.evals == before
    assert again.status == "cached" and again.cached_rows == 1 and again.service_time == 0.0
    assert again.data == first.data and again.dict_hash == first.dict_hash
    # Rounded to the same key (Precision 2): still local.
    assert client.predict(dict(r, fl=2.504)).status == "cached"
    assert cserver.counter.evals == before


def test_partial_batch_sends_only_misses_and_keeps_order(cserver: Any, client: Client) -> None:
    rows = [row(sa=sa, sl=sl, i1=i1, fl=fl) for sa, sl, i1, fl in
            [("a", "a", 10, 0.5), ("b", "c", 20, 1.5), ("c", "b", 30, 2.5), ("zz", "a", 99, 3.5), ("b", "b", 10, 4.5)]]
    client.predict(rows[1])
    client.predict(rows[3])
    before = cserver.counter.evals
    mixed = client.predict(rows)
    assert cserver.counter.evals == before + 1
    sent = orjson.loads(cserver.counter.bodies[-1])
    assert sent["batch_size"] == 3 and sent["sa"] == ["a", "c", "b"] and sent["fl"] == [0.5, 2.5, 4.5]
    assert mixed.status == "ok" and mixed.cached_rows == 2
    assert all(close_to(got, expected(r)) for got, r in zip(mixed.data, rows, strict=True))
    # Every computed row went into the local tier under its own key: each row alone is
    # now a local hit with its own value (the Go client can store a row under another's key).
    for r, want in zip(rows, mixed.data, strict=True):
        single = client.predict(r)
        assert single.status == "cached" and single.data == want
    whole = client.predict(list(reversed(rows)))
    assert whole.status == "cached" and whole.data == list(reversed(mixed.data))
    assert cserver.counter.evals == before + 1


def test_typed_results(client: Client) -> None:
    r = row(sa="b", i1=10, fl=0.75)
    typed = client.predict(r, into=Prediction)
    assert isinstance(typed.data, Prediction) and typed.data.label_id == expected(r)["label_id"]
    cached = client.predict(r, into=Scored)
    assert cached.status == "cached" and isinstance(cached.data, Scored) and cached.data.score == typed.data.score
    many = client.predict([r, row(sa="a", i1=30, fl=9.0)], into=Prediction)
    assert [type(p) for p in many.data] == [Prediction, Prediction]
    assert many.data[0] == typed.data


def test_go_style_messages(cserver: Any, client: Client) -> None:
    msg = client.new_message().string_key("sa", "a").string_key("sl", "c").int_key("i1", 30).float_key("fl", 6.25)
    single = client.run(msg, into=Prediction)
    assert single.data == client.predict(row(sa="a", sl="c", i1=30, fl=6.25), into=Prediction).data
    batch = client.new_message()
    batch.set_batch_size(3).strings_key("sa", ["a", "b", "c"]).strings_key("sl", ["a"]).ints_key("i1", [10])
    batch.floats_key("fl", [1.0, 2.0, 3.0])
    got = client.run(batch)
    singles = [client.predict(row(sa=s, sl="a", i1=10, fl=f)) for s, f in (("a", 1.0), ("b", 2.0), ("c", 3.0))]
    assert got.data == [s.data for s in singles]
    assert [s.status for s in singles] == ["cached"] * 3  # the batch's rows were written back
    with pytest.raises(InputError, match="sa"):
        Message().set_batch_size(2).string_key("sa", "a")
    with pytest.raises(TypeError, match="Message"):
        client.run({"sa": "a"})  # type: ignore[arg-type]


BAD_INPUTS = [
    (dict(row(), extra=1), UnknownFieldError),
    ({"sa": "a", "sl": "b", "i1": 20}, MissingFieldError),
    (dict(row(), i1="twenty"), InputError),
    (dict(row(), fl="x"), InputError),
    ([row(), dict(row(), i1=True)], InputError),
    ({"batch_size": 3, "sa": ["a", "b"], "sl": ["a"], "i1": [10], "fl": [1.0]}, InputError),
    ({"batch_size": 2, "sa": ["a", "b", "c"], "sl": ["a"], "i1": [10], "fl": [1.0]}, InputError),
]


@pytest.mark.parametrize(("inputs", "error"), BAD_INPUTS)
def test_bad_input_is_rejected_before_any_request_with_the_servers_message(
    cserver: Any, client: Client, inputs: object, error: type[Exception]
) -> None:
    before = cserver.counter.evals
    with pytest.raises(error) as caught:
        client.predict(inputs)
    assert cserver.counter.evals == before
    body = inputs if isinstance(inputs, dict) else {
        "batch_size": len(inputs), **{k: [r[k] for r in inputs] for k in inputs[0]}}  # type: ignore[index,union-attr,arg-type]
    with cserver.client() as http:
        answer = http.post(f"/v1/api/model/{MODEL}/eval", content=orjson.dumps(body))
    assert answer.status_code == 400
    assert str(caught.value) == answer.json()["error"]
    assert caught.value.status == 400  # type: ignore[attr-defined]


def test_server_errors_carry_status_and_message(cserver: Any, client: Client) -> None:
    with pytest.raises(NotFoundError) as missing:
        Client("no-such-model", hosts=[cserver.address])
    assert missing.value.status == 404 and "no-such-model" in missing.value.message
    # Limits only the server knows: its row limit (MaxBatchSize 64) and its BufferSize.
    with pytest.raises(BatchTooLargeError) as rows:
        client.predict([row(fl=float(i)) for i in range(65)])
    assert rows.value.status == 413 and rows.value.field == "batch_size" and "64" in rows.value.message
    big = [row(sa="a" * 400, fl=float(i)) for i in range(50)]
    with pytest.raises(PayloadTooLargeError) as large:
        client.predict(big)
    assert large.value.status == 413 and "16384" in large.value.message


def test_uncached_model_always_asks(cserver: Any) -> None:
    with Client("nocache", hosts=[cserver.address]) as c:
        assert c.cache is None
        before = cserver.counter.evals
        assert c.predict(row()).status == "ok" and c.predict(row()).status == "ok"
        assert cserver.counter.evals == before + 2


def test_scope_without_local_tier_and_given_config(cserver: Any, client: Client) -> None:
    with Client(MODEL, hosts=[cserver.address], cache_scope=CacheScope.L1 | CacheScope.L2) as remote_only:
        assert remote_only.cache is None  # this model's datastore has no external tier
        before = cserver.counter.evals
        remote_only.predict(row(sa="b", fl=7.0))
        remote_only.predict(row(sa="b", fl=7.0))
        assert cserver.counter.evals == before + 2
    with httpx.Client(base_url=cserver.url) as http:
        meta = http.get(f"/v1/api/model/{MODEL}/meta/config").json()
        dictionary = http.get(f"/v1/api/model/{MODEL}/meta/dictionary").json()
    fetches = cserver.counter.meta
    options = ClientOptions(remote_config=meta, dictionary=dictionary, cache_size_mb=1)
    with Client(MODEL, hosts=[cserver.address], options=options) as given:
        assert cserver.counter.meta == fetches
        assert given.dict_hash == client.dict_hash
        assert given.cache is not None and given.cache.memory is not None and given.cache.memory.max_bytes == 1 << 20
        assert given.predict(row(sa="c", fl=8.0)).data == client.predict(row(sa="c", fl=8.0)).data


@pytest.mark.parametrize(("option", "value", "field"), [
    ("cache_size_mb", 0, "cache_size_mb"), ("max_retries", -1, "max_retries"), ("timeout_s", float("nan"), "timeout_s"),
    ("cache_scope", 3, "cache_scope"), ("hash_validation", False, "hash_validation"),
])
def test_bad_options_name_the_field(option: str, value: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ClientOptions(**{option: value})
    with pytest.raises(TypeError, match="cache_sise_mb"):
        Client(MODEL, hosts=["127.0.0.1:1"], cache_sise_mb=3)
    with pytest.raises(ValueError, match="hosts"):
        Client(MODEL, hosts=[])


def test_no_server_is_a_transport_error() -> None:
    from redis_server import free_port

    with pytest.raises(TransportError, match=r"no answer|no working hosts"):
        Client(MODEL, hosts=[f"127.0.0.1:{free_port()}"], max_retries=1)
