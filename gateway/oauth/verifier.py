"""Checking bearer tokens on every exchange.

A token is accepted only with a valid signature by one of the gateway's keys (the algorithm fixed by
configuration, never taken from the token), the right ``iss`` and ``aud``, ``exp``/``nbf`` within a
small leeway and the RFC 9068 ``typ``. Verified tokens are cached until they expire, so the
signature is checked once per token rather than once per exchange.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.config import TokenSettings
from gateway.errors import Unauthenticated

LEEWAY = 30  # seconds of clock skew tolerated on exp and nbf
_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class TokenInfo:
    client_id: str
    scopes: frozenset[str]
    expires_at: int
    jti: str


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 2.1), or Unauthenticated."""
    if not authorization:
        raise Unauthenticated("this service needs an access token: send 'Authorization: Bearer "
                              "<token>' (get one from POST /oauth/token)", error=None)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("only Bearer tokens are accepted here", error=None)
    token = token.strip()
    if not token or " " in token:
        raise Unauthenticated("the Authorization header holds no single bearer token",
                              error="invalid_request")
    return token


class TokenVerifier:
    def __init__(self, keys: KeySet, settings: TokenSettings) -> None:
        self._keys = KeySet([k for k in keys.keys])
        self._settings = settings
        self._algorithms = [settings.algorithm]
        self._cache: dict[str, TokenInfo] = {}

    def verify(self, token: str) -> TokenInfo:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + LEEWAY >= now:
                return cached
            del self._cache[token]
        info = self._verify(token, now)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # bounded memory; the next calls simply verify again
        self._cache[token] = info
        return info

    def _verify(self, token: str, now: float) -> TokenInfo:
        try:
            decoded = jwt.decode(token, self._keys, algorithms=self._algorithms)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise Unauthenticated("the access token is malformed or its signature is not valid") \
                from exc
        header, claims = decoded.header, decoded.claims
        if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            raise Unauthenticated("the token is not an access token (typ must be at+jwt)")
        if claims.get("iss") != self._settings.issuer:
            raise Unauthenticated("the token was issued by another issuer")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self._settings.audience not in audiences:
            raise Unauthenticated("the token is meant for another audience")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int):
            raise Unauthenticated("the token's exp or nbf claim is missing or not a number")
        if exp + LEEWAY < now:
            raise Unauthenticated("the access token has expired; get a new one")
        if nbf - LEEWAY > now:
            raise Unauthenticated("the access token is not valid yet")
        client_id = claims.get("client_id") or claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise Unauthenticated("the token names no client")
        scope = claims.get("scope", "")
        return TokenInfo(client_id=client_id, scopes=frozenset(str(scope).split()),
                         expires_at=exp, jti=str(claims.get("jti", "")))
