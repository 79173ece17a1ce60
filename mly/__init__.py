"""mly: TensorFlow model serving with a dictionary-bounded prediction cache.

Importing ``mly`` pulls in nothing heavy; the server (TensorFlow, Starlette)
lives behind ``mly.server`` and the client behind ``mly.client``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
