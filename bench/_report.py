"""The published benchmark's report: the run's header, the Markdown tables and the plots.

Everything here reads the ``results.json`` document ``run.py`` writes (``render`` can be
run again on an old one), so every number in the tables and plots is one of the measured
records, aggregated the same way: median over the rounds, min-max beside it, ratios taken
round by round against the baseline measured in the same round.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

Record = dict[str, Any]

WORKLOAD_TITLES = {
    "zipf32": "zipf32: 32-row candidate batches, rows drawn from a Zipf law over 200,000 distinct rows, "
              "no body ever repeated (only a per-row cache can hit)",
    "hot": "hot: single rows cycling 1,000 distinct rows (every request a cache hit once warm)",
    "cold": "cold: single rows never repeated (every request a miss)",
    "batch32": "batch32: 1,000 distinct 32-row batches of the hot rows",
}
BASELINES = ("naive", "exact-body")


# --- header ---------------------------------------------------------------------------------

def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _first_line(cmd: Sequence[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def _token(line: str, index: int) -> str:
    words = line.split()
    return words[index] if len(words) > index else line


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_sha(root: Path) -> str:
    """The checkout's commit, ``-dirty`` when tracked files differ from it."""
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True, check=False).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"{sha}-dirty" if dirty else sha


def machine_and_versions(root: Path) -> dict[str, str]:
    tf = _version("tensorflow")
    return {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tensorflow": tf if tf != "not installed" else _version("tensorflow-cpu"),
        "mly": git_sha(root),
        "uvicorn": _version("uvicorn"),
        "starlette": _version("starlette"),
        "locust": _version("locust"),
        "wrk": _token(_first_line(["wrk", "-v"]), 1),  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
        "redis-server": _token(_first_line(["redis-server", "--version"]), 2).removeprefix("v="),  # "Redis server v=7.0.15 ..."
    }


# --- aggregation ----------------------------------------------------------------------------

def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """median (min-max) over the rounds: the noise is part of the result."""
    if not values:
        return "-"
    ordered = sorted(values)
    mid = fmt.format(statistics.median(ordered))
    return mid if len(ordered) == 1 else f"{mid} ({fmt.format(ordered[0])}-{fmt.format(ordered[-1])})"


def _num(fmt: str) -> Callable[[Sequence[float]], str]:
    return lambda values: spread(values, fmt)


def _rate_fmt(values: Sequence[float]) -> str:
    return spread(values, "{:,.0f}")


def _ms_fmt(values: Sequence[float]) -> str:
    top = max(values, default=0.0)
    return spread(values, "{:.3f}" if top < 1 else "{:.2f}" if top < 100 else "{:.0f}")


def cells_by_key(cells: Iterable[Record]) -> dict[tuple[str, str, int], list[Record]]:
    """(workload, concurrency, server) -> its records, in round order."""
    out: dict[tuple[str, str, int], list[Record]] = {}
    for rec in sorted(cells, key=lambda r: r["round"]):
        out.setdefault((rec["workload"], rec["server"], rec["concurrency"]), []).append(rec)
    return out


def round_ratios(mine: list[Record], base: list[Record], metric: str = "rps") -> list[float]:
    """Per-round ratios of ``mine`` against ``base`` measured in the same round."""
    by_round = {r["round"]: r for r in base}
    return [r[metric] / by_round[r["round"]][metric] for r in mine
            if r["round"] in by_round and by_round[r["round"]][metric]]


# --- Markdown -------------------------------------------------------------------------------

def _md_table(head: Sequence[str], rows: Iterable[Sequence[str]], right: int = 1) -> list[str]:
    """A Markdown table; columns from ``right`` on are right-aligned (numbers)."""
    align = ["---" if i < right else "---:" for i in range(len(head))]
    return ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]


def server_tables(doc: Record) -> list[str]:
    cells = cells_by_key(doc["cells"])
    servers: list[str] = doc["config"]["servers"]
    lines: list[str] = []
    for workload in doc["config"]["workloads"]:
        title = WORKLOAD_TITLES.get(workload, workload)
        zipf = doc["config"].get("zipf")
        if workload == "zipf32" and zipf:
            title = (f"zipf32: {zipf['rows_per_body']}-row candidate batches, rows drawn from a "
                     f"Zipf({zipf['exponent']:g}) law over {zipf['universe']:,} distinct rows "
                     f"({100 * zipf['oov']:g}% out-of-vocabulary values), no body ever repeated "
                     "(only a per-row cache can hit)")
        lines += ["", f"### {title}", ""]
        head = ["conc", "server", "req/s", "rows/s", "p50 ms", "p99 ms", "server CPU µs/req",
                "server CPU % core", *(f"req/s vs {b}" for b in BASELINES), "rows from cache", "load"]
        rows: list[list[str]] = []
        for conc in doc["config"]["concurrency"]:
            for server in servers:
                recs = cells.get((workload, server, conc))
                if not recs:
                    continue
                notes = []
                errors = sum(r["errors"] for r in recs)
                if errors:
                    notes.append(f"{errors} errors")
                if any(r.get("wrapped") for r in recs):
                    notes.append("rows repeated")
                ratios = []
                for base in BASELINES:
                    base_recs = cells.get((workload, base, conc))
                    ratios.append("1" if base == server and base_recs else
                                  spread(round_ratios(recs, base_recs), "{:.2f}x") if base_recs else "-")
                rows.append([str(conc), server + (f" ({'; '.join(notes)})" if notes else ""),
                             _rate_fmt([r["rps"] for r in recs]), _rate_fmt([r["rows_per_s"] for r in recs]),
                             _ms_fmt([r["p50_ms"] for r in recs]), _ms_fmt([r["p99_ms"] for r in recs]),
                             spread([r["cpu_us_per_req"] for r in recs], "{:,.0f}"),
                             spread([r["cpu_pct"] for r in recs], "{:.0f}"), *ratios,
                             spread([100 * r["row_hit_rate"] for r in recs if "row_hit_rate" in r], "{:.1f}%"),
                             recs[0]["tool"]])
        lines += _md_table(head, rows, right=2)
    return lines


def locust_table(doc: Record) -> list[str]:
    recs: list[Record] = doc.get("locust") or []
    if not recs:
        return []
    groups: dict[tuple[int, str], list[Record]] = {}
    for rec in recs:
        groups.setdefault((rec["users"], rec["user_class"]), []).append(rec)
    head = ["users", "user class", "req/s", "p50 ms", "p99 ms", "failures", "answered by the client cache", "load"]
    rows = [[str(users), cls, _rate_fmt([r["rps"] for r in rs]), spread([r["p50_ms"] for r in rs], "{:.0f}"),
             spread([r["p99_ms"] for r in rs], "{:.0f}"), str(sum(r["failures"] for r in rs)),
             spread([100 * r["cached_share"] for r in rs], "{:.1f}%") if cls.startswith("Client") else "-", "locust"]
            for (users, cls), rs in sorted(groups.items())]
    return ["", "## Through HTTP and through `mly.client` (locust, `mly memory` server)", "",
            "Locust users run as greenlets in one process pinned to the load core; its percentiles are "
            "whole milliseconds, so a client cache hit (microseconds) shows as 0 ms. `HotRowUser` is a "
            "raw HTTP POST per request; `ClientHotUser` predicts through one `mly.client.Client` "
            "whose own cache answers the warm hot rows without a request.", "",
            *_md_table(head, rows, right=2)]


def claim_section(doc: Record) -> list[str]:
    claim: Record | None = doc.get("claim")
    if not claim:
        return []
    rounds: list[Record] = claim["rounds"]
    cost = claim["model_cost_ms"]
    rows = [
        ["`mly.client` predict, warm local cache (no request)", spread([r["cached_us"] for r in rounds], "{:.1f}")],
        ["`mly.client` predict, no cache on either side (HTTP + model)",
         spread([r["uncached_us"] for r in rounds], "{:,.0f}")],
    ]
    return ["", "## End-to-end: one prediction through `mly.client`, cached vs not", "",
            f"Slow variant of the benchmark model (hidden layers {claim['hidden']}, "
            f"{claim['parameters']:,} parameters): one-row evaluation in process "
            f"p50 {cost['p50']:.2f} ms, p99 {cost['p99']:.2f} ms. The same row, {claim['calls']} timed calls "
            f"per case per round, median per round; {len(rounds)} round(s).", "",
            *_md_table(["case", "median µs per predict"], rows),
            "", f"**Ratio (no cache / warm local cache): {spread([r['ratio'] for r in rounds], '{:,.0f}x')}**"]


def markdown(doc: Record) -> str:
    head = doc["header"]
    cfg = doc["config"]
    versions = head["versions"]
    lines = [
        "# mly published benchmark (`bench/run.py`)", "",
        f"- command: `{head['command']}`",
        f"- started: {head['started']}, took {head.get('elapsed_s', 0):.0f} s",
        f"- machine: {versions['cpu']}, {versions['cores']} cores, {versions['kernel']}",
        f"- pinning: {head['pinning']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("cpu", "cores", "kernel")),
        f"- model: `{head['model']}` ({head['parameters']:,} parameters)",
        f"- {cfg['rounds']} round(s); every server of a round up at once, cells interleaved server by server "
        f"in an order alternating per cell and per round; {cfg['seconds']} s per cell after "
        f"{cfg['warmup']} s warm-up (hot, batch32 cells); zipf32 cells measure the same bodies on every server, "
        f"each server with a per-row cache first sent every earlier body ({cfg.get('zipf_warm', 0):,} more than the "
        "furthest server had reached); cells median (min-max) over rounds; "
        "ratios per round against the baseline of the same round",
        "- load: `wrk` = wrk, 1 thread, closed loop, keep-alive, pinned to the load core; "
        "`locust` = locust headless, pinned to the load core",
        "- server CPU: user + system CPU of the server's whole process tree during the measured "
        "seconds (`mly redis L1` includes its redis-server), per request and as a share of one core",
        "", "## Servers under wrk",
    ]
    lines += server_tables(doc)
    lines += locust_table(doc)
    lines += claim_section(doc)
    return "\n".join(lines) + "\n"


# --- plots ----------------------------------------------------------------------------------

def _human(value: float, _pos: object = None) -> str:
    """Tick labels a reader takes in at a glance: 20k, 1.5M, 0.5 (not 2x10^4)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def plots(doc: Record, out_dir: Path) -> list[Path]:
    """throughput.png (rows/s) and p99.png against concurrency: a subplot per workload,
    a line per server, min-max over the rounds as error bars, log scales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    cells = cells_by_key(doc["cells"])
    cfg = doc["config"]
    workloads, servers, levels = cfg["workloads"], cfg["servers"], cfg["concurrency"]
    written = []
    for metric, label, name in (("rows_per_s", "rows/s (log)", "throughput.png"), ("p99_ms", "p99 ms (log)", "p99.png")):
        fig, axes = plt.subplots(1, len(workloads), figsize=(5.2 * len(workloads), 4.4), squeeze=False)
        for ax, workload in zip(axes[0], workloads):
            for server in servers:
                xs, mids, lo, hi = [], [], [], []
                for conc in levels:
                    values = [r[metric] for r in cells.get((workload, server, conc), [])]
                    if values:
                        mid = statistics.median(values)
                        xs.append(conc)
                        mids.append(mid)
                        lo.append(mid - min(values))
                        hi.append(max(values) - mid)
                if xs:
                    ax.errorbar(xs, mids, yerr=[lo, hi], marker="o", capsize=3, label=server)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(_human))
            low, high = ax.get_ylim()
            # Inside one decade a log axis has no major tick to label: label the minor ones.
            ax.yaxis.set_minor_formatter(ticker.FuncFormatter(_human) if high / low < 10 else ticker.NullFormatter())
            ax.set_xlabel("concurrency (connections)")
            ax.set_ylabel(label)
            ax.set_title(workload)
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
        fig.suptitle(f"{'Throughput' if metric == 'rows_per_s' else 'p99 latency'} (wrk; median of "
                     f"{cfg['rounds']} round(s), bars min-max; mly {doc['header']['versions']['mly']})", fontsize=10)
        fig.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend below the plots
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
