"""API keys and admin keys, from env only, and the middleware that checks them.

Usage:
    keys = KeyRing.from_env()        # SLMOPS_API_KEYS, SLMOPS_ADMIN_KEYS (comma-separated)
    keys.key_id("sk-...")            # "key:3f2a9c1e" (a sha256 prefix: logs never hold a key)

- ``/health`` is open.
- ``/admin/*`` needs ``Authorization: Bearer <admin key>``. An API key is refused there (403). With no admin
  key configured, admin routes answer loopback clients (127.0.0.1, ::1) only.
- Every other route needs an API key when ``SLMOPS_API_KEYS`` is set.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from fastapi import Request

from slmops.serve.schemas import error

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _split(value: str) -> frozenset[str]:
    return frozenset(k.strip() for k in value.split(",") if k.strip())


@dataclass(frozen=True)
class KeyRing:
    api_keys: frozenset[str] = frozenset()
    admin_keys: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls) -> KeyRing:
        return cls(_split(os.environ.get("SLMOPS_API_KEYS", "")), _split(os.environ.get("SLMOPS_ADMIN_KEYS", "")))

    @staticmethod
    def key_id(key: str) -> str:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]

    def check(self, path: str, bearer: str, client_host: str | None) -> tuple[int, str] | str:
        """Who is asking (a key id, "loopback" or "anonymous"), or the (status, message) refusing them."""
        if path.startswith("/admin"):
            if self.admin_keys:
                if bearer in self.admin_keys:
                    return self.key_id(bearer)
                if bearer in self.api_keys:
                    return 403, "an API key cannot use admin routes: send an admin key (SLMOPS_ADMIN_KEYS)"
                return 401, "missing or invalid admin key"
            if client_host in LOOPBACK:
                return "loopback"
            return 403, "admin routes answer loopback clients only while SLMOPS_ADMIN_KEYS is not set"
        if path == "/health" or not self.api_keys:
            return "anonymous"
        return self.key_id(bearer) if bearer in self.api_keys else (401, "missing or invalid API key")


async def check_keys(request: Request, call_next):
    """HTTP middleware: refuses what ``KeyRing.check`` refuses; the caller's id goes on ``request.state``."""
    state = request.app.state.server
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    host = request.client.host if request.client else None
    outcome = state.keys.check(request.url.path, bearer, host)
    if isinstance(outcome, tuple):
        state.metrics.error("unauthorized" if outcome[0] == 401 else "forbidden")
        return error(outcome[0], outcome[1], "authentication_error" if outcome[0] == 401 else "permission_error")
    request.state.caller = outcome
    return await call_next(request)
