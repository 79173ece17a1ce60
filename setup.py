"""Build the Cython hot paths in ``mly/_native``.

Metadata lives in ``pyproject.toml``; this file only lists the extensions. A
failed compile fails the install: mly never falls back to slow Python code.
Set ``MLY_DEBUG=1`` for annotated HTML and line tracing.

The one optional extension is ``nghttp2`` (the native HTTP/2 engine): it is built
when libnghttp2's headers and library are found (Debian ``libnghttp2-dev``);
without them the package still builds and HTTP/2 is served by the ``h2`` package.
Set ``MLY_NGHTTP2=0`` to leave it out, ``MLY_NGHTTP2=1`` to fail when it cannot be built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build environment problem
    raise SystemExit("mly needs Cython>=3.0 to build mly._native: pip install 'Cython>=3.0,<4'") from exc

DEBUG = os.environ.get("MLY_DEBUG") == "1"
NATIVE_MODULES = ["fnv", "keys", "encode", "mru", "redis_wire", "http1", "aerospike_wire"]

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


def nghttp2_flags() -> dict[str, list[str]] | None:
    """Compiler and linker flags for libnghttp2 (pkg-config, else a compile-and-link test), or None."""
    if shutil.which("pkg-config"):
        found = subprocess.run(["pkg-config", "--cflags", "--libs", "libnghttp2"], capture_output=True, text=True)
        if found.returncode == 0:
            flags = found.stdout.split()
            return {"include_dirs": [f[2:] for f in flags if f.startswith("-I")],
                    "library_dirs": [f[2:] for f in flags if f.startswith("-L")],
                    "libraries": [f[2:] for f in flags if f.startswith("-l")] or ["nghttp2"]}
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CompileError, LinkError
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "probe.c")
        with open(source, "w") as f:
            f.write("#include <nghttp2/nghttp2.h>\nint main(void) { return nghttp2_version(0) == 0; }\n")
        try:
            objects = compiler.compile([source], output_dir=folder)
            compiler.link_executable(objects, os.path.join(folder, "probe"), libraries=["nghttp2"])
        except (CompileError, LinkError):
            return None
    return {"include_dirs": [], "library_dirs": [], "libraries": ["nghttp2"]}


WANT_NGHTTP2 = os.environ.get("MLY_NGHTTP2", "")
if WANT_NGHTTP2 != "0":
    NGHTTP2 = nghttp2_flags()
    if NGHTTP2 is not None:
        extensions.append(Extension(
            "mly._native.nghttp2",
            ["mly/_native/nghttp2.pyx"],
            extra_compile_args=["-O3"] if not DEBUG else ["-O0", "-g"],
            **NGHTTP2,
        ))
    elif WANT_NGHTTP2 == "1":
        raise SystemExit("MLY_NGHTTP2=1 but libnghttp2 was not found (apt-get install libnghttp2-dev)")
    else:
        print("mly: libnghttp2 not found (apt-get install libnghttp2-dev): HTTP/2 will be served by the "
              "h2 package", file=sys.stderr)

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
