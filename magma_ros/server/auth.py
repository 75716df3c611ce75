"""Optional bearer-token authentication with a constant-time comparison."""
from __future__ import annotations

import hmac

from .errors import ApiError


class BearerAuth:
    """Checks ``Authorization: Bearer <token>``; with no token configured every request passes."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token is not None else None

    @property
    def enabled(self) -> bool:
        """True when a token is required."""
        return self._token is not None

    def check(self, authorization: str | None) -> None:
        """Raise a 401 ``ApiError`` unless the header carries the configured token."""
        if self._token is None:
            return
        scheme, _, supplied = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(supplied.strip().encode("utf-8"), self._token):
            raise ApiError(401, "invalid bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
