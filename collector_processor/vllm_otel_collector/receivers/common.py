"""What both receivers (and the read API) share: the bearer-token check."""

from __future__ import annotations

import hmac


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """True when no token is configured, or ``authorization`` is ``Bearer <expected>``: the scheme in any letter case
    and followed by one or more spaces (RFC 7235 §2.1: ``credentials = auth-scheme 1*SP token68``), the token
    compared exactly, in constant time."""
    if not expected:
        return True
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.lstrip(" ").encode("utf-8", "replace"),
                                                              expected.encode())
