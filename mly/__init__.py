"""mly: TensorFlow model serving with a dictionary-bounded prediction cache.

Importing ``mly`` pulls in nothing heavy; the server (TensorFlow, Starlette)
lives behind ``mly.server`` and the client behind ``mly.client``. The version is
written once, in ``mly/_version.py``.
"""

from mly._version import __version__

__all__ = ["__version__"]
