"""Where a partly-cached candidate batch's time goes outside TensorFlow, stage by stage, in process.

On ``zipf32`` traffic (``corpus.ZipfBatches``: 32 distinct rows per body, rows repeat across
bodies, bodies never do) most bodies have a few rows the memory tier lacks. This loads the
benchmark model (``ctr_model.py``) through mly's own registry with the memory tier, sends
``--warm`` bodies through the eval fast path so the tier holds the popular rows, then takes the
next ``--bodies`` bodies one at a time and times each stage of answering it, once the way the
common path does (parse every row, encode every row, pick the missing rows, serialise a list of
fragments) and once the way ``mly/service/body_rows.py`` does (read and encode only the missing
rows from the body's bytes, join the rows' JSON). Stages both ways share (the keys and memory
read, the other tiers, single-flight, the TensorFlow call, the transformer, each computed row's
JSON, the write-back) are timed once. Figures are the median over bodies (µs), from
``time.perf_counter_ns`` on one thread; the HTTP layer is not included. Nothing is asserted.

    python bench/bench_mixed_path.py [--warm 6000] [--bodies 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EVAL = "/v1/api/model/ctr/eval"
SHARED = ("keys + memory read (lookup_body)", "other tiers (get_many)", "single-flight claim + resolve",
          "transformer", "computed rows' JSON", "write-back (put_many)")
COMMON = ("parse_body", "encode_columns (every row)", "pick the missing rows", "fragments + orjson.dumps")
BODY = ("read_rows (missing rows only)", "join the rows' JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=6000, help="bodies sent first, so the tier holds popular rows")
    parser.add_argument("--bodies", type=int, default=2000, help="timed bodies")
    parser.add_argument("--model", help="an already built benchmark model (default: build one)")
    args = parser.parse_args(argv)
    from corpus import ZipfBatches, batch_body, ctr_fields
    from ctr_model import build

    with tempfile.TemporaryDirectory(prefix="mly-mixed-") as work:
        model = args.model or build(os.path.join(work, "model"))
        bodies = [batch_body(rows) for rows in ZipfBatches().batches(ctr_fields(), args.warm + args.bodies)]
        times, partly, missing = asyncio.run(measure(model, work, bodies[: args.warm], bodies[args.warm:]))
    print(f"{partly} of {args.bodies} bodies partly cached, {missing / max(partly, 1):.2f} rows of 32 missing on average; "
          "median us per partly-cached body:")
    for title, names in (("shared", SHARED), ("common path", COMMON), ("body path", BODY)):
        print(f"  {title}:")
        for name in names:
            print(f"    {name:<36} {statistics.median(times[name]):7.1f}")
    shared = sum(statistics.median(times[n]) for n in SHARED)
    for title, names in (("common path", COMMON), ("body path", BODY)):
        print(f"  outside TensorFlow, {title:<12} {shared + sum(statistics.median(times[n]) for n in names):7.1f}")
    print(f"  TensorFlow call of the missing rows (batcher, wall) {statistics.median(times['tf']):7.1f}")
    return 0


async def measure(model: str, work: str, warm: list[bytes], timed: list[bytes]) -> tuple[dict[str, list[float]], int, int]:
    import numpy as np
    import orjson

    from mly.common.request import encode_columns, has_exact_names, parse_body
    from mly.config.load import load_config
    from mly.http.app import create_app
    from mly.service.body_hits import lookup_body
    from mly.service.body_rows import read_rows
    from mly.service.registry import ModelRegistry

    config = {"Models": [{"ID": "ctr", "URL": model, "Inputs": [{"Name": "bid", "Precision": 2}], "DataStore": "ctr"}],
              "Datastores": [{"ID": "ctr", "Cache": {"SizeMb": 256}}]}
    path = Path(work) / "mixed.json"
    path.write_text(json.dumps(config))
    registry = ModelRegistry(load_config(str(path)))
    registry.load_all()
    app = create_app(registry)
    for raw in warm:  # the real path: popular rows end up in the memory tier
        answer, lookup = app.answer_now(EVAL, raw)
        if answer is None:
            await app.answer_post(EVAL, raw, lookup)
    service = registry.get("ctr")
    generation = service.current
    cache, dtypes, interface = service.cache, generation.interface.dtypes, generation.interface
    assert cache is not None and generation.batcher is not None
    times: dict[str, list[float]] = defaultdict(list)
    partly = missing = 0
    clock = time.perf_counter_ns

    for raw in timed:
        t0 = clock()
        lookup = lookup_body(generation, cache, raw, 1000)
        t1 = clock()
        assert lookup is not None
        if lookup.all_hit:
            continue
        partly += 1
        # The common path's own stages.
        t2 = clock()
        request = parse_body(raw, max_batch_size=1000)
        t3 = clock()
        assert has_exact_names(request.values, dtypes)
        columns = encode_columns(request, dtypes, generation.encoders, names_checked=True)
        t4 = clock()
        # The body path's reading stage (before the lookups: it needs only what memory lacked).
        read = read_rows(service, raw, lookup, 1000)
        t5 = clock()
        assert read is not None
        keys = lookup.keys
        found = await cache.get_many(keys, generation.dict_hash, lookup.values)
        t6 = clock()
        misses = [i for i, value in enumerate(found) if value is None]
        if not misses:
            continue
        missing += len(misses)
        t7 = clock()
        index = np.asarray(misses, dtype=np.intp)
        subset = {name: column[index] for name, column in columns.items()}
        t8 = clock()
        claim = generation.flight.claim([keys[i] for i in misses], misses)
        t9 = clock()
        feeds = {name: subset[name] for name in interface.fed}
        outputs = await generation.batcher.submit(feeds, len(misses), None)
        t10 = clock()
        computed = service._transform(interface, subset, outputs, len(misses))
        t11 = clock()
        encoded = [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in computed]
        t12 = clock()
        generation.flight.resolve(claim.keys, encoded)
        t13 = clock()
        cache.put_many(list(zip(claim.keys, computed, encoded)), generation.dict_hash)
        t14 = clock()
        results: list[Any] = [None if value is None else orjson.Fragment(value) for value in found]
        for i, row_json in zip(misses, encoded):
            results[i] = orjson.Fragment(row_json)
        common_data = orjson.dumps(results, option=orjson.OPT_SERIALIZE_NUMPY)
        t15 = clock()
        joined: list[Any] = list(found)
        for i, row_json in zip(misses, encoded):
            joined[i] = row_json
        body_data = b"[" + b",".join(joined) + b"]"
        t16 = clock()
        assert body_data == common_data
        for name, took in (
            (SHARED[0], t1 - t0), (SHARED[1], t6 - t5), (SHARED[2], (t9 - t8) + (t13 - t12)), (SHARED[3], t11 - t10),
            (SHARED[4], t12 - t11), (SHARED[5], t14 - t13),
            (COMMON[0], t3 - t2), (COMMON[1], t4 - t3), (COMMON[2], t8 - t7), (COMMON[3], t15 - t14),
            (BODY[0], t5 - t4), (BODY[1], t16 - t15), ("tf", t10 - t9),
        ):
            times[name].append(took / 1000)
    registry.close()
    return times, partly, missing


if __name__ == "__main__":
    sys.exit(main())
