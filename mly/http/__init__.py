"""The HTTP layer: Starlette, kept thin (bytes in, bytes out)."""
