"""Server command lines and process-tree CPU accounting shared by the server benchmarks.

A benchmark starts each server as a child process (``_load.server``), so the server's
CPU is what the child and every process below it spent: uvicorn is one process, Triton
is PyTriton's Python process, ``tritonserver`` and the Python-backend stub under it.
Reading ``/proc/<pid>/stat`` before and after a run gives that cost without sampling.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
_TICK = os.sysconf("SC_CLK_TCK")


def uvicorn_cmd(factory: str, port: int) -> list[str]:
    """One of ``apps.py``'s reference servers, the way a competent first version would run it."""
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH),
            f"apps:{factory}", "--factory", "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def mly_cli() -> list[str]:
    """``mly-fast`` of this interpreter's environment, even when its bin folder is not on PATH."""
    exe = shutil.which("mly-fast")
    if exe is None:
        local = Path(sys.executable).with_name("mly-fast")
        exe = str(local) if local.is_file() else None
    return [exe] if exe else [sys.executable, "-c", "import sys; from mly.cli import main; sys.exit(main())"]


def mly_serve_cmd(config: dict[str, Any], workdir: str | Path, port: int) -> list[str]:
    """``mly-fast serve`` on ``config`` written to a file in ``workdir`` (JSON is YAML)."""
    path = Path(workdir) / f"mly-{port}.yaml"
    path.write_text(json.dumps({"Endpoint": {"Port": port}, **config}, indent=1))
    return [*mly_cli(), "serve", str(path), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


# --- process-tree CPU -----------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process; None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _table() -> dict[int, tuple[int, float]]:
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    return table


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` right now."""
    return {p for p, (parent, _) in _table().items() if parent == pid}


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds spent so far by ``roots`` and all their live descendants.

    A descendant that exited in between is not counted (its time goes to its parent's
    ``cutime`` only once waited for); servers keep their workers for the whole run.
    """
    table = _table()
    below: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        below.setdefault(parent, []).append(pid)
    total, seen = 0.0, set()
    stack = [p for p in roots if p in table]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += table[pid][1]
        stack.extend(below.get(pid, ()))
    return total
