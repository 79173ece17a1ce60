"""Go's debug endpoints, the Python way: a heap snapshot and a sampled CPU profile.

Each is registered only when the config asks (``EnableMemProf`` / ``EnableCPUProf``),
under ``/v1/api/debug``, which the AllowedSubnet guard protects. Both are plain
standard library (tracemalloc, ``sys._current_frames``, cProfile), nothing to install.

- ``GET /v1/api/debug/memprof?seconds=10&top=50&format=text|snapshot``: tracemalloc
  is not left running (it slows every allocation), so the profile traces allocations
  for ``seconds`` and reports what is still alive at the end, grouped by source line:
  what the server keeps allocating. If tracing is already on (``PYTHONTRACEMALLOC``),
  it answers at once with everything traced since. ``format=snapshot`` downloads a
  pickled ``tracemalloc.Snapshot`` (``tracemalloc.Snapshot.load(path)``).
- ``GET /v1/api/debug/pprof/profile?seconds=30&hz=100``: samples every thread's stack
  ``hz`` times a second and counts the stacks of threads that used CPU since the
  previous sample (from ``/proc``; ``idle=1`` counts waiting threads too), as
  collapsed stacks (``thread;module:function;... count``, the input of flame-graph
  tools such as flamegraph.pl or speedscope). ``format=pstats`` instead runs cProfile
  on the event-loop thread for the window and downloads a ``pstats`` file.
- ``GET /v1/api/debug/pprof/`` lists these; ``.../pprof/cmdline`` is the command line.

One profile of each kind runs at a time; a second request waits for the first.
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import marshal
import os
import pickle
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Mapping
from types import FrameType
from typing import Any

from mly.errors import InputError

__all__ = [
    "CpuSampler",
    "collapsed_stacks",
    "debug_routes",
    "heap_report",
    "int_param",
]

DEBUG_PREFIX = "/v1/api/debug"
MAX_SECONDS = 300
_IDLE_THREAD_PREFIXES = ("mly-profiler",)


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A query integer within ``[low, high]``; a 400 naming it otherwise."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise InputError(name, f"must be between {low} and {high}, got {value}")
    return value


def choice_param(params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = params.get(name) or choices[0]
    if raw not in choices:
        raise InputError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw


# ------------------------------------------------------------------ heap


def heap_report(snapshot: tracemalloc.Snapshot, top: int, window: str) -> str:
    """Top allocation sites of ``snapshot`` by size, as text."""
    snapshot = snapshot.filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ))
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    lines = [f"# tracemalloc: {len(stats)} allocation sites, {total / 1024:.1f} KiB alive ({window})",
             f"# top {min(top, len(stats))} by size: size_kib count site"]
    for stat in stats[:top]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size / 1024:10.1f} {stat.count:8d} {frame.filename}:{frame.lineno}")
    return "\n".join(lines) + "\n"


async def take_heap_snapshot(seconds: int) -> tuple[tracemalloc.Snapshot, str]:
    """A snapshot of what is alive, traced for ``seconds`` unless tracing was on already."""
    if tracemalloc.is_tracing():
        return await asyncio.to_thread(tracemalloc.take_snapshot), "traced since tracing started"
    tracemalloc.start(1)
    try:
        await asyncio.sleep(seconds)
        snapshot = await asyncio.to_thread(tracemalloc.take_snapshot)
    finally:
        tracemalloc.stop()
    return snapshot, f"allocated during the last {seconds} s and still alive"


# ------------------------------------------------------------------ CPU


def _frame_label(frame: FrameType) -> str:
    code = frame.f_code
    module = frame.f_globals.get("__name__", os.path.basename(code.co_filename))
    return f"{module}:{code.co_name}"


def _stack(frame: FrameType | None) -> list[str]:
    labels: list[str] = []
    while frame is not None:
        labels.append(_frame_label(frame))
        frame = frame.f_back
    labels.reverse()
    return labels


def _thread_cpu_ticks(native_id: int) -> int | None:
    """utime + stime of one thread in clock ticks (Linux), ``None`` where unknown."""
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class CpuSampler:
    """Counts the stacks of busy threads, ``hz`` samples a second.

    The event loop cannot be sampled from another thread: a sampler thread gets
    the GIL only when the loop lets it go, which is while it waits in epoll, so
    every sample would show the loop idle. So when the loop runs on the main
    thread (``mly-fast serve``, each ``--workers`` process) the main thread is
    sampled by ``SIGPROF`` (a CPU-time timer): the handler runs in that thread
    and sees the frame it interrupted, and a sample counts only if the thread
    used CPU since the previous one. Other threads (the inference pool, store
    clients) are sampled from a helper thread, where a thread's stack counts
    only if its CPU time (``/proc``) moved since the previous sample.
    """

    def __init__(self, hz: int = 100, *, idle: bool = False) -> None:
        self.interval = 1.0 / hz
        self.idle = idle
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self.signal_samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mly-profiler", daemon=True)
        self._main_ident: int | None = None
        self._main_cpu = 0.0
        self._old_handler: Any = None

    @property
    def signals(self) -> bool:
        """Whether the main thread is sampled by ``SIGPROF`` (the profile started on it)."""
        return self._main_ident is not None

    def start(self) -> None:
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            self._main_ident = threading.get_ident()
            self._main_cpu = time.thread_time()
            self._old_handler = signal.signal(signal.SIGPROF, self._on_signal)
            signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        self._thread.start()

    def stop(self) -> None:
        if self._main_ident is not None:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            signal.signal(signal.SIGPROF, self._old_handler)
        self._stop.set()
        self._thread.join()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Runs in the main thread: ``frame`` is what it was executing."""
        cpu = time.thread_time()
        busy = cpu - self._main_cpu >= self.interval / 2
        if busy:
            self._main_cpu = cpu
        if busy or self.idle:
            self.signal_samples += 1
            self.counts[";".join(["MainThread", *_stack(frame)])] += 1

    def _run(self) -> None:
        me = threading.get_ident()
        last_cpu: dict[int, int | None] = {}
        while not self._stop.wait(self.interval):
            threads = {t.ident: t for t in threading.enumerate()}
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me or ident == self._main_ident:
                    continue
                thread = threads.get(ident)
                name = thread.name if thread is not None else f"thread-{ident}"
                if name.startswith(_IDLE_THREAD_PREFIXES):
                    continue
                if not self.idle and thread is not None and thread.native_id is not None:
                    cpu = _thread_cpu_ticks(thread.native_id)
                    before = last_cpu.get(ident)
                    last_cpu[ident] = cpu
                    if cpu is not None and (before is None or cpu == before):
                        continue  # did not run since the previous sample (or first sight)
                self.counts[";".join([name, *_stack(frame)])] += 1

    async def run_for(self, seconds: float) -> None:
        self.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(self._stop_helper)
            self.stop()

    def _stop_helper(self) -> None:
        self._stop.set()
        self._thread.join()


def collapsed_stacks(counts: Mapping[str, int]) -> str:
    """``stack count`` lines, most frequent first (flame-graph input)."""
    return "".join(f"{stack} {n}\n" for stack, n in sorted(counts.items(), key=lambda kv: -kv[1]))


async def profile_event_loop(seconds: int) -> bytes:
    """cProfile of everything the event-loop thread runs for ``seconds``, as a pstats file."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        await asyncio.sleep(seconds)
    finally:
        profile.disable()
    profile.create_stats()
    return marshal.dumps(profile.stats)  # type: ignore[attr-defined]  # what Profile.dump_stats writes


# ------------------------------------------------------------------ routes


def debug_routes(*, mem: bool, cpu: bool) -> list[Any]:
    """The Starlette routes for what is enabled (none when neither is)."""
    if not (mem or cpu):
        return []
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    def download(body: bytes, filename: str, media_type: str) -> Response:
        return Response(body, media_type=media_type,
                        headers={"Content-Disposition": f"attachment; filename={filename}"})

    mem_lock = asyncio.Lock()
    cpu_lock = asyncio.Lock()

    async def memprof(request: Request) -> Response:
        params = request.query_params
        seconds = int_param(params, "seconds", 10, 1, MAX_SECONDS)
        top = int_param(params, "top", 50, 1, 10_000)
        fmt = choice_param(params, "format", ("text", "snapshot"))
        async with mem_lock:
            snapshot, window = await take_heap_snapshot(seconds)
        if fmt == "snapshot":
            return download(pickle.dumps(snapshot, pickle.HIGHEST_PROTOCOL), "memprof.pickle",
                            "application/octet-stream")
        return PlainTextResponse(await asyncio.to_thread(heap_report, snapshot, top, window))

    async def profile(request: Request) -> Response:
        params = request.query_params
        seconds = int_param(params, "seconds", 30, 1, MAX_SECONDS)
        fmt = choice_param(params, "format", ("collapsed", "pstats"))
        hz = int_param(params, "hz", 100, 1, 1000)
        idle = choice_param(params, "idle", ("0", "1")) == "1"
        async with cpu_lock:
            if fmt == "pstats":
                return download(await profile_event_loop(seconds), "profile.pstats", "application/octet-stream")
            sampler = CpuSampler(hz, idle=idle)
            await sampler.run_for(seconds)
        main = "main thread by SIGPROF, " if sampler.signals else ""
        header = (f"# {sampler.samples} samples at {hz} Hz over {seconds} s ({main}other threads from a helper); "
                  f"{'all' if idle else 'busy'} threads\n")
        return download((header + collapsed_stacks(sampler.counts)).encode(), "profile.collapsed", "text/plain")

    async def index(request: Request) -> Response:
        lines = ["mly debug endpoints:"]
        if mem:
            lines.append(f"{DEBUG_PREFIX}/memprof?seconds=10&top=50&format=text|snapshot")
        if cpu:
            lines.append(f"{DEBUG_PREFIX}/pprof/profile?seconds=30&hz=100&idle=0&format=collapsed|pstats")
            lines.append(f"{DEBUG_PREFIX}/pprof/cmdline")
        return PlainTextResponse("\n".join(lines) + "\n")

    async def cmdline(request: Request) -> Response:
        return PlainTextResponse("\x00".join(sys.argv))

    routes = []
    if mem:
        routes.append(Route(f"{DEBUG_PREFIX}/memprof", memprof, methods=["GET"]))
    if cpu:
        routes += [
            Route(f"{DEBUG_PREFIX}/pprof/", index, methods=["GET"]),
            Route(f"{DEBUG_PREFIX}/pprof/profile", profile, methods=["GET"]),
            Route(f"{DEBUG_PREFIX}/pprof/cmdline", cmdline, methods=["GET"]),
        ]
    return routes
