"""The model's vocabulary changes while a client uses it (hot reload on the server): the
first answer under the new dictionary hash makes the client fetch the new dictionary
once, and from then on it keys with it and never returns entries of the old one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from model_builders import build_changed_vocab_model, expected_keras_lookup
from reloading import point, wait_until

from mly.client import Client


@pytest.fixture(scope="module")
def reloading(counting_server: Any, model_dirs: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("client-versions")
    v1 = root / "v1"
    shutil.copytree(model_dirs["keras"], v1)
    v2 = Path(build_changed_vocab_model(str(root / "v2")))  # "d" joins sa's vocabulary
    link = root / "current"
    point(link, v1)
    config = {
        "Models": [{"ID": "r", "URL": str(link), "DataStore": "mem", "ReloadIntervalSec": 0.2,
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }
    live = counting_server(config, tmp_path_factory.mktemp("reload-server")).start()
    yield live, {"v1": v1, "v2": v2, "link": link}
    live.stop()


def score(r: dict, vocab: tuple[str, ...]) -> float:
    return float(expected_keras_lookup([r["sa"]], [r["sl"]], [r["i1"]], [r["fl"]], sa_vocab=vocab)["score"][0, 0])


def test_dictionary_change_while_in_use(reloading: tuple[Any, dict[str, Path]]) -> None:
    server, versions = reloading
    service = server.registry.get("r")
    new_word = {"sa": "d", "sl": "b", "i1": 20, "fl": 1.0}  # [UNK] before, a word after
    with Client("r", hosts=[server.address]) as client:
        old_hash = client.dict_hash
        before = client.predict(new_word)
        assert before.data["score"] == pytest.approx(score(new_word, ("a", "b", "c")))
        assert client.predict(new_word).status == "cached"
        fetches = server.counter.meta

        point(versions["link"], versions["v2"])
        wait_until(lambda: service.current.dict_hash != old_hash, "the reload", timeout_s=60)
        new_hash = service.current.dict_hash
        # Until the client hears of the new dictionary its entries are its best knowledge;
        # the first answer computed under the new hash tells it.
        # Eight threads at once each get such an answer: one refresh, never two at once.
        with ThreadPoolExecutor(8) as pool:
            others = list(pool.map(lambda i: client.predict({"sa": "a", "sl": "a", "i1": 10, "fl": 5.0 + i}),
                                   range(8)))
        assert {(o.status, o.dict_hash) for o in others} == {("ok", new_hash)}
        wait_until(lambda: client.dict_hash == new_hash and not client._core.refreshing, "the client's refresh", timeout_s=60)
        assert server.counter.meta == fetches + 2  # one config and one dictionary fetch

        asked = server.counter.evals
        after = client.predict(new_word)
        assert server.counter.evals == asked + 1  # the old entry is not served
        assert after.status == "ok" and after.dict_hash == new_hash
        assert after.data["score"] == pytest.approx(score(new_word, ("a", "b", "c", "d")))
        assert after.data["score"] != before.data["score"]
        assert client.predict(new_word).status == "cached"
