"""Build the Cython hot paths in ``mly/_native``.

Metadata lives in ``pyproject.toml``; this file only lists the extensions. A
failed compile fails the install: mly never falls back to slow Python code.
Set ``MLY_DEBUG=1`` for annotated HTML and line tracing.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build environment problem
    raise SystemExit("mly needs Cython>=3.0 to build mly._native: pip install 'Cython>=3.0,<4'") from exc

DEBUG = os.environ.get("MLY_DEBUG") == "1"
NATIVE_MODULES = ["fnv", "keys", "encode", "mru"]

extensions = [
    Extension(
        f"mly._native.{name}",
        [f"mly/_native/{name}.pyx"],
        extra_compile_args=["-O3"] if not DEBUG else ["-O0", "-g"],
        define_macros=[("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [],
    )
    for name in NATIVE_MODULES
    if os.path.exists(f"mly/_native/{name}.pyx")
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        annotate=DEBUG,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
            "linetrace": DEBUG,
        },
    )
)
