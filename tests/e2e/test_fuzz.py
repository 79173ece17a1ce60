"""Random and mutated requests against the real server: no 5xx, and every error in the one JSON shape.

The count is small here (``MLY_FUZZ_COUNT``, default 300, fixed seed ``MLY_FUZZ_SEED``) so CI stays
fast; the same generator was run with 2,000 requests when it was written.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any
from urllib.parse import quote

import httpx
from live_server import LiveServer

COUNT = int(os.environ.get("MLY_FUZZ_COUNT", "300"))
SEED = int(os.environ.get("MLY_FUZZ_SEED", "20261202"))

VALID = {
    "sli": {"sa": "a", "sl": "b", "i1": 10, "fl": 0.5},
    "raw": {"sa": "a", "sl": "b", "i1": 10, "fl": 0.5},
    "aux": {"sa": "a", "sl": "b", "note": "n", "kf": "k", "fl": 0.5, "i1": 10},
    "ops": None,  # filled from meta/config at run time
    "num": None,
}
METHODS = ["POST"] * 6 + ["GET"] * 3 + ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", "x-unknown/ty pe;;="]


def scalar(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, -1, 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30,
        0.0, -0.0, 1e-310, 1e38, 3.5e38, 1e39, 1e308, -1e308, 0.125, rng.uniform(-1e6, 1e6),
        rng.randint(-(10**12), 10**12), "", "a", "b", "c", "[UNK]", "x/y\\z", "é😀", "\u0000", "a" * 300,
        str(rng.random()), "nan", "inf", "-inf", "1e400", "0x10", " 7 ",
    ])


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.6 or depth > 3:
        return scalar(rng)
    if roll < 0.85:
        return [value(rng, depth + 1) for _ in range(rng.choice([0, 1, 1, 2, 3, 5]))]
    return {str(scalar(rng))[:10]: value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def mutated_body(rng: random.Random, valid: dict[str, Any]) -> bytes:
    row: dict[str, Any] = dict(valid)
    batch = rng.random() < 0.35
    if batch:
        n = rng.choice([1, 2, 3, 7])
        row = {k: [v] * rng.choice([1, n, n, n + 1, 0]) for k, v in row.items()}
        row["batch_size"] = rng.choice([n, n, n, 0, -1, 10_001, 2**63, 2**64, 1.5, "3", None, True])
    for _ in range(rng.randint(0, 3)):
        action = rng.random()
        keys = list(row)
        if action < 0.4 and keys:
            row[rng.choice(keys)] = value(rng)
        elif action < 0.55 and keys:
            row.pop(rng.choice(keys))
        elif action < 0.7:
            row[rng.choice(["zz", "cache_key", "batch_size", "SA", ""])] = value(rng)
        elif action < 0.8 and keys:
            key = rng.choice(keys)
            row[key] = [row[key]] * rng.randint(0, 4)
    raw = json.dumps(row).encode()  # the stdlib writes integers of any size (orjson stops at 64 bits)
    roll = rng.random()
    if roll < 0.05:
        return raw[: rng.randint(0, len(raw))]  # truncated
    if roll < 0.08:
        return b"[" * rng.choice([10, 600, 5000]) + b"]" * rng.choice([0, 10, 5000])  # deep nesting
    if roll < 0.10:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    if roll < 0.12:
        return raw.replace(b"0.5", b"NaN").replace(b"10", b"1e400")
    return raw


def mutated_query(rng: random.Random, valid: dict[str, Any]) -> str:
    pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in valid.items()]
    for _ in range(rng.randint(0, 3)):
        action = rng.random()
        if action < 0.4 and pairs:
            i = rng.randrange(len(pairs))
            pairs[i] = (pairs[i][0], str(scalar(rng)))
        elif action < 0.55 and pairs:
            pairs.pop(rng.randrange(len(pairs)))
        elif action < 0.75 and pairs:
            pairs.append(rng.choice(pairs))  # a repeated key
        else:
            pairs.append((rng.choice(["batch_size", "cache_key", "zz", ""]), str(scalar(rng))))
    text = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    if rng.random() < 0.1:
        text += rng.choice(["&", "&&", "%", "%zz", "=", "a=%ff%fe", "&sa"])
    return text


def test_fuzzed_requests_get_no_5xx(server: LiveServer) -> None:
    rng = random.Random(SEED)
    failures: list[str] = []
    with server.client() as client:
        for model in ("ops", "num"):
            meta = client.get(f"/v1/api/model/{model}/meta/config").json()
            defaults = {"string": "a", "int64": 1, "int32": 1, "float": 0.5, "float32": 0.5, "float64": 0.5,
                        "bool": True}
            VALID[model] = {f["Name"]: defaults[f["DataType"]] for f in meta["Inputs"]}
        seen: dict[int, int] = {}
        for i in range(COUNT):
            method = rng.choice(METHODS)
            model = rng.choice([*VALID, "nope", "sli/../aux", "%2e%2e"])
            valid = VALID.get(model) or VALID["sli"]
            suffix = rng.choice(["/eval"] * 8 + ["/meta/config", "/meta/dictionary", "/meta/stats", "/evals", ""])
            path = f"/v1/api/model/{model}{suffix}"
            headers = {}
            content_type = rng.choice(CONTENT_TYPES)
            if content_type is not None:
                headers["content-type"] = content_type
            body = mutated_body(rng, valid) if method not in ("GET", "HEAD") else b""
            query = mutated_query(rng, valid) if method == "GET" else ""
            url = f"{path}?{query}" if query else path
            try:
                response = client.request(method, url, content=body, headers=headers)
            except httpx.HTTPError as exc:  # a dropped connection is as bad as a 500
                failures.append(f"#{i} {method} {url} {body[:200]!r}: {type(exc).__name__}: {exc}")
                continue
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"#{i} {method} {url} {body[:200]!r} -> {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400 and method != "HEAD":
                error = response.json()
                if error.get("status") != "error" and response.status_code != 403:
                    failures.append(f"#{i} {method} {url} -> {response.status_code} not the error shape: {error}")
    assert not failures, "\n".join(failures[:20])
    # The generator must reach both sides of the API: some successes and many kinds of refusal.
    assert seen.get(200, 0) > COUNT // 20 and {400, 404, 405} <= set(seen), seen
