"""Triton Inference Server (through PyTriton) serving the benchmark model: the industry baseline.

PyTriton 0.7.0 needs ``numpy<2`` while the project runs numpy 2, so it lives in its own
virtualenv (``.venv-triton`` at the repo root), made once by::

    python bench/triton_server.py --setup          # idempotent: a stamp file skips a done install

and the server runs with that venv's interpreter::

    .venv-triton/bin/python bench/triton_server.py --model-dir DIR --http-port 8000

The model is ``python bench/ctr_model.py OUT``. A PyTriton ``@batch`` function calls the
SavedModel's ``serving_default`` once per dynamic batch; Triton's dynamic batcher merges
concurrent requests and its local response cache answers a repeated request (the same
input tensors: a hash of the whole request, so one changed row of a batch is a miss)
without calling Python. The infer function runs in this process: Triton's Python-backend
stub (a child of tritonserver) hands it each batch over shared memory and ZeroMQ. The HTTP
API is the KServe v2 JSON protocol: ``v2_body`` turns corpus rows into a request body and
``INFER_PATH`` is where it goes; wait on ``READY_PATH`` (the model's, not the server's).

This module imports neither PyTriton nor TensorFlow at import time (numpy only, through
``ctr_model``), so the benchmark driver (project venv, numpy 2) can import ``v2_body``,
``ensure_venv`` and the paths from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ctr_model import FLOAT_INPUT, MODEL_ID, VOCABULARIES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".venv-triton"
#: tensorflow-cpu is pinned to the project's TensorFlow so the SavedModel it exports loads as is;
#: 2.21 still accepts numpy 1.26, which PyTriton 0.7.0 requires.
REQUIREMENTS = ("nvidia-pytriton==0.7.0", "numpy<2", "tensorflow-cpu==2.21.0")
MODEL_NAME = MODEL_ID
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
#: ready once the model is loaded; ``/v2/health/ready`` is not: PyTriton loads the model through
#: the API after the server is up, and until then a server with no model counts as ready.
READY_PATH = f"/v2/models/{MODEL_NAME}/ready"
HOST = "127.0.0.1"
#: the benchmark model's inputs in its input order -> v2 datatype
INPUTS: dict[str, str] = {**{name: "BYTES" if isinstance(vocab[0], str) else "INT64"
                             for name, vocab in VOCABULARIES.items()}, FLOAT_INPUT: "FP32"}
OUTPUT = "ctr"


# --- request bodies (no PyTriton needed) ------------------------------------------------------

def v2_body(rows: Sequence[dict[str, Any]]) -> bytes:
    """A KServe v2 infer request for ``rows`` (dicts as ``corpus.Corpus.row`` draws them).

    Every input is ``[rows, 1]``, as the model takes them, so a 1-row and a 32-row body
    differ only in ``shape`` and ``data``. Compact separators: one body per line for wrk.
    """
    if not rows:
        raise ValueError("a v2 body needs at least one row")
    inputs = [{"name": name, "shape": [len(rows), 1], "datatype": dtype, "data": [r[name] for r in rows]}
              for name, dtype in INPUTS.items()]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


# --- the virtualenv ---------------------------------------------------------------------------

def ensure_venv(venv: Path = DEFAULT_VENV, *, quiet: bool = True) -> Path:
    """Create ``venv`` with PyTriton in it unless a stamp says it is already there; returns its python.

    The stamp's name hashes the requirement pins, so changing a pin reinstalls. pip's
    output goes to a log in the venv, shown only when the install fails.
    """
    python = venv / "bin" / "python"
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:12]
    stamp = venv / f".installed-{digest}"
    if stamp.is_file() and python.is_file():
        return python
    started = time.monotonic()
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv / "pip-install.log"
    print(f"installing {' '.join(REQUIREMENTS)} into {venv} (pip log: {log})", file=sys.stderr, flush=True)
    with log.open("w") as fh:
        done = subprocess.run([str(python), "-m", "pip", "install", "--upgrade", *(["--quiet"] if quiet else []),
                               "pip", *REQUIREMENTS], stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.stderr.write(log.read_text()[-5000:])
        raise SystemExit(f"installing PyTriton into {venv} failed (exit {done.returncode})")
    stamp.touch()
    print(f"{venv} ready in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return python


# --- the server (inside the Triton venv) ------------------------------------------------------

def _infer_function(model_dir: str) -> Any:
    """A PyTriton ``@batch`` function: one ``serving_default`` call per dynamic batch.

    Triton hands over each input as a ``[rows, 1]`` array (BYTES inputs as object arrays
    of ``bytes``), already concatenated across the requests the batcher merged.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from pytriton.decorators import batch

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    _, specs = fn.structured_input_signature
    if set(specs) != set(INPUTS):
        raise SystemExit(f"{model_dir} has inputs {sorted(specs)}, not the benchmark model's {sorted(INPUTS)}")

    @batch  # type: ignore[misc]
    def infer(**inputs: Any) -> dict[str, Any]:
        feeds = {name: tf.constant(inputs[name], dtype=spec.dtype) for name, spec in specs.items()}
        out = fn(**feeds)[OUTPUT].numpy()
        return {OUTPUT: np.asarray(out, dtype=np.float32).reshape(-1, 1)}

    # Trace and warm the graph before Triton takes traffic, as the other servers do.
    infer.__wrapped__(**{name: np.array([[b""]], dtype=object) if spec.dtype == tf.string
                         else np.zeros((1, 1), dtype=spec.dtype.as_numpy_dtype) for name, spec in specs.items()})
    return infer


def _stub_finds_our_libpython() -> None:
    """Put this interpreter's ``libpython`` first on the library path Triton's processes inherit.

    Triton runs the Python backend in a stub process linked against ``libpython3.X.so.1.0``
    that takes its standard library from this venv's interpreter. Where the interpreter is
    not the system one (pyenv, a custom build) the loader would otherwise pick the system's
    libpython of the same minor version but another patch level, and the two disagree:
    on Debian 12 with pyenv 3.11.7 the stub dies loading the model with ``'_thread.RLock'
    object has no attribute '_recursion_count'`` (3.11.7's stdlib on 3.11.2's runtime).
    """
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and Path(libdir, sysconfig.get_config_var("INSTSONAME") or "").is_file():
        current = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def serve(args: argparse.Namespace) -> None:
    import logging

    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _stub_finds_our_libpython()
    # PyTriton stops Triton and its stub processes on KeyboardInterrupt. Python leaves SIGINT
    # ignored when it started ignored (a background job of a script), and SIGTERM would end
    # this process alone and orphan tritonserver: both become a KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    infer = _infer_function(args.model_dir)
    dtypes = {"BYTES": np.bytes_, "INT64": np.int64, "FP32": np.float32}
    config = TritonConfig(
        http_address=HOST, http_port=args.http_port,
        allow_grpc=args.grpc_port > 0, grpc_address=HOST, grpc_port=args.grpc_port or None,
        metrics_address=HOST, metrics_port=args.metrics_port, allow_metrics=True,
        allow_gpu_metrics=False, allow_cpu_metrics=False,
        cache_config=[f"local,size={args.cache_mb << 20}"] if args.cache else None,
        log_verbose=0,
    )
    model_config = ModelConfig(
        max_batch_size=args.max_batch,
        batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
        response_cache=args.cache,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=MODEL_NAME, infer_func=infer,
            inputs=[Tensor(name=name, dtype=dtypes[dtype], shape=(1,)) for name, dtype in INPUTS.items()],
            outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(1,))],
            config=model_config, strict=True,
        )
        triton.run()
        print(f"triton ready: http://{HOST}:{args.http_port}{READY_PATH} infer POST {INFER_PATH} "
              f"metrics http://{HOST}:{args.metrics_port}/metrics cache={'on' if args.cache else 'off'} "
              f"max_batch={args.max_batch} queue_delay_us={args.queue_delay_us}", flush=True)
        triton.serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the Triton virtualenv (if needed) and exit")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="virtualenv for --setup")
    parser.add_argument("--model-dir", help="the benchmark SavedModel (python bench/ctr_model.py OUT)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001, help="0: no gRPC endpoint")
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--max-batch", type=int, default=64, help="rows per dynamic batch (a request's rows count)")
    parser.add_argument("--queue-delay-us", type=int, default=0,
                        help="how long the batcher may hold a request for more (Triton's default: 0)")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                        help="Triton's local response cache")
    parser.add_argument("--cache-mb", type=int, default=256)
    args = parser.parse_args(argv)
    if args.setup:
        print(ensure_venv(args.venv))
        return 0
    if not args.model_dir:
        parser.error("--model-dir is required to serve")
    serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
