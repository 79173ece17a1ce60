"""The TensorFlow-facing package: the only part of mly that imports TensorFlow.

Importing ``mly.model`` itself is cheap; TensorFlow is imported by the modules
that need it (``saved_model``, ``signature``, ``vocab``, ``runner``), so the
config and interface code next to them stays usable without it.
"""
