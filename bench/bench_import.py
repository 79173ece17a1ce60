"""How long importing the client takes, in fresh processes (issue #27's target: under 150 ms).

    python bench/bench_import.py                         # this interpreter, 10 processes per case
    python bench/bench_import.py --python /venv/bin/python --runs 20

Each case runs in ``--runs`` fresh interpreters, one after the other, from an empty
folder; figures are the median and min-max of the whole process's wall time
(``time.perf_counter`` around ``subprocess.run``) and of the imports alone (the
``-X importtime`` cumulative time of the statement's top-level modules). The
``python -c pass`` row is the interpreter's own start-up, paid by any program.
Measure a client-only install (``pip install mly``, no server extra) to see what a
user sees: a development virtualenv with every extra also has httpx's optional
command-line dependencies, which httpx imports when they are there.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "python -c pass": "pass",
    "import mly.client": "import mly.client",
    "from mly.client import Client": "from mly.client import Client",
    "Client built (no network)": (
        "from mly.client import Client\n"
        "meta = {'ID': 'm', 'Inputs': [{'Name': 's', 'DataType': 'string'}]}\n"
        "dictionary = {'Layers': [{'Name': 's', 'Strings': ['a'], 'Hash': 7}], 'Hash': 7}\n"
        "Client('m', hosts=['127.0.0.1:1'], remote_config=meta, dictionary=dictionary).close()"
    ),
}

_TOP = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")


def imports_us(stderr: str) -> int:
    """Microseconds of the statement's own imports: the top-level lines of ``-X importtime``
    after the interpreter's start-up modules (``site`` and what it loads come first)."""
    total, after_site = 0, False
    for line in stderr.splitlines():
        match = _TOP.match(line)
        if match is None:
            continue
        if after_site:
            total += int(match.group(1))
        elif match.group(2) == "site":
            after_site = True
    return total


def measure(python: str, code: str, runs: int, cwd: str) -> tuple[list[float], list[float]]:
    walls, imports = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([python, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=cwd)
        walls.append((time.perf_counter() - t0) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"{code!r} failed:\n{done.stderr[-2000:]}")
        imports.append(imports_us(done.stderr) / 1000)
    return walls, imports


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ms ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure (default: this one)")
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per case")
    args = parser.parse_args()
    print(f"{args.python}: median (min-max) of {args.runs} fresh processes")
    print(f"{'case':32} {'process wall time':>26} {'imports (-X importtime)':>28}")
    with tempfile.TemporaryDirectory() as cwd:
        for name, code in CASES.items():
            walls, imports = measure(args.python, code, args.runs, cwd)
            print(f"{name:32} {spread(walls):>26} {spread(imports):>28}")


if __name__ == "__main__":
    main()
