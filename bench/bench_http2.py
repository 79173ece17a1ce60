"""HTTP/1.1 vs HTTP/2 on one mly server, both HTTP/2 engines side by side, and what the
first-bytes check costs HTTP/1.1.

    python bench/bench_http2.py                 # 3 alternating rounds, 20k requests per case
    python bench/bench_http2.py --rounds 1 --requests 5000
    python bench/bench_http2.py --only h1 --rounds 6   # just the HTTP/1.1 A/B
    python bench/bench_http2.py --only "h1 mly,m=16" --misses --tls   # the engines at Go's client shape
    python bench/bench_http2.py --protocol-only --rounds 8 --requests 40000   # the protocols alone

Each case starts ``mly-fast serve`` on the bundled example model and drives it with
h2load (Debian's ``nghttp2-client``); one request body repeated, so cache hits (with
``--misses`` also a server without a cache, where every request runs the model; with ``--tls``
also cache hits over TLS, ALPN deciding the protocol):

- ``h1 httptools``: uvicorn's plain protocol (``MLY_HTTP_PROTOCOL=httptools``), the baseline;
- ``h1 mly``: mly's protocol (looks at the first bytes, then is uvicorn's);
- ``h2c ENGINE -m N``: cleartext HTTP/2 with prior knowledge, N streams per connection, served
  by the ``nghttp2`` engine or the pure-Python ``h2`` one (``MLY_HTTP2_ENGINE``).

With two or more cores the server runs on core 0 and h2load on core 1 (``taskset``), so
the load generator does not take the server's CPU.

Besides req/s it prints the server's CPU time per request (user + system, from
/proc), which moves much less than req/s when other work shares the machine.
Figures are median (min-max) over the rounds. Only loopback is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = {"country": "us", "device": "mobile", "category": "books", "hour": 9, "price": 1.25}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Core pinning (``taskset``): the server on core 0, h2load on core 1, when there are two.
PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
SERVER_CPU = ["taskset", "-c", "0"] if PIN else []
LOAD_CPU = ["taskset", "-c", "1"] if PIN else []


def start(config: Path, port: int, protocol: str, engine: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLY_HTTP_PROTOCOL", None)
    env.pop("MLY_HTTP2_ENGINE", None)
    if protocol == "httptools":
        env["MLY_HTTP_PROTOCOL"] = "httptools"
    if engine:
        env["MLY_HTTP2_ENGINE"] = engine
    exe = shutil.which("mly-fast") or str(Path(sys.executable).parent / "mly-fast")
    proc = subprocess.Popen([*SERVER_CPU, exe, "serve", str(config), "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


# A constant ASGI app, so only the connection protocol differs between the two servers.
_CONSTANT_APP = """
import os, uvicorn
from mly.http.h2limits import H2Settings
from mly.http.protocol import MlyUvicornConfig, protocol_class

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})

http = "httptools" if os.environ["MODE"] == "httptools" else protocol_class(H2Settings())
uvicorn.Server(MlyUvicornConfig(app, host="127.0.0.1", port=int(os.environ["PORT"]), loop="uvloop", http=http,
                                log_level="warning", lifespan="off", access_log=False)).run()
"""


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made now (h2load does not check it)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mly bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def protocol_only(work: Path, body: Path, rounds: int, requests: int) -> None:
    """Both protocols on a constant app, both servers up, h2load runs alternating between them."""
    script = work / "constant_app.py"
    script.write_text(_CONSTANT_APP)
    servers = {}
    for mode in ("httptools", "mly"):
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "MODE": mode, "PORT": str(port)})
        servers[mode] = (proc, port)
    try:
        for _, port in servers.values():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
        results: dict[str, list[tuple[float, ...]]] = {mode: [] for mode in servers}
        for _ in range(rounds):
            for mode, (proc, port) in servers.items():
                before = cpu_seconds(proc.pid)
                rate = h2load(["--h1", "-n", str(requests), "-c", "64", "-d", str(body), f"http://127.0.0.1:{port}/x"])
                results[mode].append((rate, (cpu_seconds(proc.pid) - before) / requests * 1e6))
        print(f"connection protocol only (constant app), h1 c=64, {requests} requests x {rounds} rounds")
        report(results)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)


def report(results: dict[str, list[tuple[float, ...]]]) -> None:
    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"

    print(f"{'case':<34} {'req/s':>28} {'server CPU us/request':>26} {'p99 ms':>22}")
    for name, values in results.items():
        p99 = spread([v[2] for v in values]) if all(len(v) > 2 for v in values) else "-"
        print(f"{name:<34} {spread([v[0] for v in values]):>28} {spread([v[1] for v in values]):>26} {p99:>22}")


LAST_P99_MS = 0.0
"""p99 latency of the last ``h2load`` run, from its per-request log (h2load prints no percentiles)."""


def h2load(args: list[str]) -> float:
    global LAST_P99_MS
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log_file:
        out = subprocess.run([*LOAD_CPU, "h2load", "--log-file", log_file.name, *args], capture_output=True,
                             text=True, timeout=600).stdout
        # One line per request: start time (us since the epoch), status, duration (us).
        durations = sorted(int(line.split()[2]) for line in Path(log_file.name).read_text().splitlines() if line)
    done = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    if not done or done.group(1) != done.group(2):
        raise SystemExit(f"h2load failed:\n{out}")
    match = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    assert match is not None, out
    LAST_P99_MS = durations[min(len(durations) - 1, int(len(durations) * 0.99))] / 1000 if durations else 0.0
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--model", help="an already built example model folder (default: build one)")
    parser.add_argument("--only", default="",
                        help="run only the cases whose name contains this, or one of these (e.g. h1 or h1,m=16)")
    parser.add_argument("--misses", action="store_true", help="also a server without a cache (every request a miss)")
    parser.add_argument("--tls", action="store_true", help="also cache hits over TLS (a self-signed certificate)")
    parser.add_argument("--protocol-only", action="store_true",
                        help="HTTP/1.1 A/B of the two connection protocols on a constant app (no model)")
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install nghttp2-client")
    work = Path(tempfile.mkdtemp(prefix="mly-bench-h2-"))
    body = work / "body.json"
    body.write_text(json.dumps(BODY))
    if args.protocol_only:
        protocol_only(work, body, args.rounds, args.requests)
        return 0
    model = args.model or str(work / "model")
    if not args.model:
        subprocess.run([sys.executable, str(ROOT / "examples/build_model.py"), model], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    configs = {"hits": work / "hits.json", **({"misses": work / "misses.json"} if args.misses else {})}
    configs["hits"].write_text(json.dumps({
        "Models": [{"ID": "ctr", "URL": model, "DataStore": "mem", "Inputs": [{"Name": "price", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 64}}],
        "Endpoint": {"HTTP2MaxConcurrentStreams": 256},
    }))
    (work / "misses.json").write_text(json.dumps({
        "Models": [{"ID": "ctr", "URL": model, "Inputs": [{"Name": "price", "Precision": 2}]}],
        "Endpoint": {"HTTP2MaxConcurrentStreams": 256},
    }))
    if args.tls:
        configs["tls"] = work / "tls.json"
        cert, key = self_signed(work)
        configs["tls"].write_text(json.dumps({**json.loads(configs["hits"].read_text()),
                                              "TLS": {"CertFile": str(cert), "KeyFile": str(key)}}))
    n, c, conns = str(args.requests), str(args.connections * 16), str(args.connections)
    shapes = {
        "h1 httptools c=64": ("httptools", "", ["--h1", "-n", n, "-c", c]),
        "h1 mly c=64": ("mly", "", ["--h1", "-n", n, "-c", c]),
    }
    for streams in ("1", "16", "100"):
        for engine in ("h2", "nghttp2"):
            shapes[f"h2c {engine} c={conns} m={streams}"] = ("mly", engine, ["-n", n, "-c", conns, "-m", streams])
    cases = {f"{kind} {name if kind != 'tls' else name.replace('h2c', 'h2')}": (configs[kind], *shape)
             for kind in configs for name, shape in shapes.items()}
    cases = {name: case for name, case in cases.items() if any(part in name for part in args.only.split(","))}
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in cases}
    # One server per (config, protocol, engine), up for every round: the rounds alternate between
    # them without a start (TensorFlow's import) each. HTTP/1.1 runs on the nghttp2 engine's
    # server (the engine plays no part in it).
    servers: dict[tuple[Path, str, str], tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for config, protocol, engine, _ in cases.values():
            key = (config, protocol, engine or "nghttp2")
            if key not in servers:
                port = free_port()
                servers[key] = (start(config, port, protocol, key[2]), port)
        for round_no in range(args.rounds):
            for name, (config, protocol, engine, load) in cases.items():
                proc, port = servers[(config, protocol, engine or "nghttp2")]
                scheme = "https" if config == configs.get("tls") else "http"
                url = f"{scheme}://127.0.0.1:{port}/v1/api/model/ctr/eval"
                common = ["-d", str(body), "-H", "content-type: application/json", url]
                h2load(["--h1" if "--h1" in load else "-m1", "-n", "500", "-c", "4", *common])  # warm the cache
                before = cpu_seconds(proc.pid)
                rate = h2load([*load, *common])
                cpu_us = (cpu_seconds(proc.pid) - before) / args.requests * 1e6
                results[name].append((rate, cpu_us, LAST_P99_MS))
                print(f"  round {round_no + 1} {name:<32} {rate:9.0f} req/s  {cpu_us:6.1f} us CPU/request  "
                      f"p99 {LAST_P99_MS:6.2f} ms", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGINT)
        for proc, _ in servers.values():
            proc.wait(timeout=30)

    print(f"\n{args.requests} requests per case, {args.rounds} round(s): median (min-max)")
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
