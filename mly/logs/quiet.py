"""Import TensorFlow without the start-up lines a CPU user cannot act on.

``TF_CPP_MIN_LOG_LEVEL`` does not reach everything: lines logged while the
native libraries load come before TensorFlow reads it ("All log messages before
absl::InitializeLog() ...", the oneDNN notice, "Could not find cuda drivers"),
and the CUDA probe's ``E0000 ... failed call to cuInit`` is an error line even on
a machine that has no GPU driver at all. So the import and the device probe run
with file descriptor 2 pointed at a temporary file; afterwards every captured
line that is not known noise is written to the real stderr unchanged, so a real
problem (a missing library, a crash message, a Python warning) still shows.
The cuInit failure is noise only when no GPU driver exists (TensorFlow said so,
or there is no ``/dev/nvidiactl``); with a driver it is a real error and kept.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable

__all__ = ["NOISE", "filter_noise", "import_tensorflow_quietly"]

#: Parts of lines that say nothing a user could act on, on any machine.
NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "] oneDNN custom operations are on.",
    "] Could not find cuda drivers on your machine, GPU will not be used.",
)
#: Parts of lines that are noise only where no GPU driver exists.
NO_DRIVER_NOISE = (
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
)
_NO_DRIVER_SIGN = "Could not find cuda drivers"


def filter_noise(lines: Iterable[str], *, gpu_driver: bool | None = None) -> list[str]:
    """The lines worth showing; ``gpu_driver=None`` decides from the lines and ``/dev/nvidiactl``."""
    lines = list(lines)
    if gpu_driver is None:
        gpu_driver = os.path.exists("/dev/nvidiactl") and not any(_NO_DRIVER_SIGN in line for line in lines)
    drop = NOISE if gpu_driver else NOISE + NO_DRIVER_NOISE
    return [line for line in lines if not any(part in line for part in drop)]


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with the noise above filtered out (once per process)."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to keep quiet
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, not at import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = filter_noise(text.splitlines(keepends=True))
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
