"""The one place mly's version is written: setuptools reads it for the package metadata
(``pyproject.toml``, dynamic version), ``mly.__version__`` and ``mly-fast --version`` import it."""

__version__ = "0.1.0"
