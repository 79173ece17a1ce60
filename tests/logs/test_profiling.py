"""The debug endpoints on a real server: registered only when enabled, guarded by AllowedSubnet,
and each a usable profile (a tracemalloc snapshot, collapsed stacks, a pstats file)."""

from __future__ import annotations

import io
import marshal
import pickle
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import LiveServer


def config(model_dirs: dict[str, str], **top: object) -> dict:
    return {"Models": [{"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem",
                        "Inputs": [{"Name": "fl", "Precision": 2}]}],
            "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}], **top}


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(config(model_dirs, EnableMemProf=True, EnableCPUProf=True),
                      tmp_path_factory.mktemp("prof")).start()
    yield live
    live.stop()


class Load:
    """Eval requests in a background thread while a profile runs, so there is work to see."""

    def __init__(self, server: LiveServer, clients: int = 4) -> None:
        self.server = server
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        with self.server.client() as client:
            i = 0
            while not self.stop.is_set():
                client.post("/v1/api/model/sli/eval", json={"sa": "a", "sl": "b", "i1": i % 50, "fl": i % 7 / 10})
                i += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_not_registered_unless_enabled(model_dirs: dict[str, str], tmp_path: Path) -> None:
    live = LiveServer(config(model_dirs), tmp_path).start()
    try:
        with live.client() as client:
            for path in ("/v1/api/debug/memprof", "/v1/api/debug/pprof/", "/v1/api/debug/pprof/profile"):
                assert client.get(path).status_code == 404, path
    finally:
        live.stop()


def test_guarded_by_allowed_subnet(model_dirs: dict[str, str], tmp_path: Path) -> None:
    live = LiveServer(config(model_dirs, EnableMemProf=True, EnableCPUProf=True, AllowedSubnet=["10."]),
                      tmp_path).start()
    try:
        with live.client() as client:
            for path in ("/v1/api/debug/memprof?seconds=1", "/v1/api/debug/pprof/profile?seconds=1"):
                response = client.get(path)
                assert response.status_code == 403 and response.content == b"", path
    finally:
        live.stop()


def test_heap_profile_text_and_snapshot(server: LiveServer, tmp_path: Path) -> None:
    assert not tracemalloc.is_tracing()
    with server.client() as client, Load(server):
        text = client.get("/v1/api/debug/memprof", params={"seconds": 1, "top": 5})
        snap = client.get("/v1/api/debug/memprof", params={"seconds": 1, "format": "snapshot"})
    assert not tracemalloc.is_tracing()  # the window closed: no lasting cost
    assert text.status_code == 200, text.text
    lines = text.text.splitlines()
    assert lines[0].startswith("# tracemalloc: ") and "allocated during the last 1 s and still alive" in lines[0]
    sites = [line for line in lines if not line.startswith("#")]
    assert 1 <= len(sites) <= 5 and all(".py:" in line for line in sites), text.text
    assert snap.status_code == 200
    assert snap.headers["content-disposition"] == "attachment; filename=memprof.pickle"
    path = tmp_path / "memprof.pickle"
    path.write_bytes(snap.content)
    snapshot = tracemalloc.Snapshot.load(str(path))
    assert snapshot.statistics("filename"), "an empty snapshot"
    assert isinstance(pickle.loads(snap.content), tracemalloc.Snapshot)


def test_cpu_profile_collapsed_stacks(server: LiveServer) -> None:
    with server.client() as client, Load(server):
        response = client.get("/v1/api/debug/pprof/profile", params={"seconds": 2, "hz": 200})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == "attachment; filename=profile.collapsed"
    header, *stacks = response.text.splitlines()
    # The test server's loop is not on the main thread: only the helper thread samples it.
    assert header.startswith("# ") and "samples at 200 Hz over 2 s (other threads from a helper); busy" in header
    assert stacks, "no busy thread was sampled under load"
    counts = {}
    for line in stacks:
        stack, count = line.rsplit(" ", 1)
        counts[stack] = int(count)
    assert all(n > 0 for n in counts.values())
    for stack in counts:  # thread name, then module:function frames from the outermost
        name, *frames = stack.split(";")
        assert name and frames and all(":" in f for f in frames), stack
    assert any(stack.startswith("mly-live-server;threading:_bootstrap;") for stack in counts), list(counts)


def test_cpu_profile_pstats(server: LiveServer) -> None:
    import pstats

    with server.client() as client, Load(server):
        response = client.get("/v1/api/debug/pprof/profile", params={"seconds": 1, "format": "pstats"})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == "attachment; filename=profile.pstats"
    stats = pstats.Stats.__new__(pstats.Stats)
    stats.init(None)  # type: ignore[attr-defined]
    stats.stats = marshal.loads(response.content)  # what pstats.Stats(path) reads
    stats.get_top_level_stats()  # type: ignore[attr-defined]
    functions = {f"{Path(file).name}:{name}" for file, _, name in stats.stats}
    assert any(f.startswith("fast.py:") for f in functions), sorted(functions)[:20]
    stats.stream = io.StringIO()  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(5)


def test_index_cmdline_and_bad_parameters(server: LiveServer) -> None:
    with server.client() as client:
        index = client.get("/v1/api/debug/pprof/")
        assert index.status_code == 200 and "/v1/api/debug/pprof/profile" in index.text
        assert "/v1/api/debug/memprof" in index.text
        assert client.get("/v1/api/debug/pprof/cmdline").status_code == 200
        for path, params, field in (
            ("/v1/api/debug/pprof/profile", {"seconds": "0"}, "seconds"),
            ("/v1/api/debug/pprof/profile", {"seconds": "ten"}, "seconds"),
            ("/v1/api/debug/pprof/profile", {"seconds": "1", "format": "svg"}, "format"),
            ("/v1/api/debug/pprof/profile", {"seconds": "1", "hz": "5000"}, "hz"),
            ("/v1/api/debug/memprof", {"seconds": "301"}, "seconds"),
            ("/v1/api/debug/memprof", {"top": "-1"}, "top"),
        ):
            response = client.get(path, params=params)
            assert response.status_code == 400, (path, params, response.text)
            assert response.json()["error"].startswith(f"{field}: "), response.text


def test_cpu_profile_of_a_served_event_loop(model_dirs: dict[str, str], tmp_path: Path) -> None:
    """``mly-fast serve`` runs its loop on the main thread, sampled by SIGPROF: the stacks show
    the eval code the loop was running, not only where it waited."""
    import httpx
    import yaml
    from serve_process import ServeProcess

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(model_dirs, EnableCPUProf=True)))
    with ServeProcess(path) as served:

        class Remote:
            url = served.base

            def client(self) -> httpx.Client:
                return httpx.Client(base_url=self.url, timeout=30)

        with Load(Remote(), clients=4):  # type: ignore[arg-type]
            response = httpx.get(f"{served.base}/v1/api/debug/pprof/profile", params={"seconds": 2}, timeout=60)
        assert response.status_code == 200, response.text
        header, *stacks = response.text.splitlines()
        assert "main thread by SIGPROF" in header, header
        main = [line for line in stacks if line.startswith("MainThread;")]
        assert main, stacks[:10]
        assert any("mly.http.fast:" in line for line in main), main[:20]
        # Still serving after the timer was taken down.
        assert httpx.get(f"{served.base}/v1/api/health", timeout=5).status_code == 200
        assert served.stop() == 0, served.output()
