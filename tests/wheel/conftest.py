"""The wheel tests' fixtures live in ``wheel_install`` (importable by the tests as well)."""

from wheel_install import dist, wheel_server

__all__ = ["dist", "wheel_server"]
