"""``pip install mly`` is the client: it imports and works where TensorFlow and Starlette
cannot even be imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCKED = ("tensorflow", "keras", "starlette", "uvicorn")
SERVER_SIDE = ("mly.service", "mly.model", "mly.http", "mly.batching", "mly.server", "mly.cli")

SCRIPT = f"""
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("not installed: " + name)
        return None

sys.meta_path.insert(0, Refuse())
try:
    import tensorflow
except ImportError:
    pass
else:
    raise SystemExit("the import hook did not work")

import mly.client
from mly.client import Client, CacheScope

meta = {{
    "ID": "mem", "Cache": {{"SizeMb": 1}}, "Connection": "l1", "Namespace": "n", "Dataset": "d",
    "Connections": [{{"ID": "l1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": 1}}],
    "Inputs": [{{"Name": "s", "DataType": "string"}}, {{"Name": "p", "DataType": "float", "Precision": 1}}],
}}
dictionary = {{"Layers": [{{"Name": "s", "Strings": ["a", "b"], "Hash": 7}}], "Hash": 7}}
client = Client("m", hosts=["127.0.0.1:1"], remote_config=meta, dictionary=dictionary)
assert client.cache is not None and client.cache.l1 is not None
assert client._core.state.schema.key({{"s": "zz", "p": 0.25}}) == "[UNK]/0.3"
client.close()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}
                or any(m == p or m.startswith(p + ".") for p in {SERVER_SIDE!r}))
print(",".join(loaded))
"""


def test_client_imports_and_builds_without_tensorflow_or_starlette() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"mly.client pulled in {done.stdout.strip()}"


HEAVY = ("tensorflow", "starlette", "uvicorn", "h2", "numpy", "httpx", "asyncio", "yaml", "mly.cache",
         "mly.common", "mly.config")
"""What ``import mly.client`` must not load: the server's stack and, until a name is used,
the client's own heavy imports (bench/bench_import.py measures what this saves)."""


def test_importing_the_client_package_loads_nothing_heavy() -> None:
    script = "import sys, mly.client; print(','.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = done.stdout.strip().split(",")
    assert "mly.client" in modules
    loaded = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == [], f"import mly.client loaded {loaded}"


def test_every_public_name_of_the_client_resolves_to_its_defining_module() -> None:
    import importlib

    import mly.client

    for name in mly.client.__all__:
        value = getattr(mly.client, name)
        assert getattr(value, "__name__", name) == name
        assert value.__module__.startswith("mly.") and getattr(importlib.import_module(value.__module__), name) is value
    assert "Client" in dir(mly.client)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = mly.client.Nope
