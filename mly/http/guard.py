"""AllowedSubnet: Go's prefix check of the client address on admin endpoints."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PROTECTED_PREFIXES", "AllowedSubnetMiddleware"]

#: Paths Go protects (config, health, stats, debug); eval and meta stay open.
PROTECTED_PREFIXES = ("/v1/api/config", "/v1/api/health", "/v1/api/stats", "/v1/api/debug")


class AllowedSubnetMiddleware:
    """403 with an empty body unless ``"ip:port"`` of the client starts with an allowed prefix.

    Go matches plain string prefixes of ``RemoteAddr``; so does this, so configs
    carry over unchanged. An empty list allows everyone (the fast path).
    """

    def __init__(self, app: ASGIApp, prefixes: Sequence[str] = ()) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.prefixes and scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIXES):
            client = scope.get("client") or ("", 0)
            address = f"{client[0]}:{client[1]}"
            if not address.startswith(self.prefixes):
                await send({"type": "http.response.start", "status": 403, "headers": [(b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
