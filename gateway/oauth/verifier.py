"""Checking bearer tokens on every exchange.

A token is accepted only with a valid signature by a key the gateway trusts for its issuer (its own
keys, or a trusted outside issuer's JWKS), with an algorithm tied to that key and never taken from
the token alone; the right ``iss`` and ``aud``; ``exp``/``nbf`` within a small leeway; the RFC 9068
``typ``; a ``jti`` that is not revoked; and a client that is not disabled.

Verified tokens are cached until they expire, so the signature is checked once per token rather
than once per exchange; the revocation and disabled-client checks are set look-ups made on every
call, against sets each worker reloads every ``token.refresh`` seconds (see ``gateway.oauth.sync``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from gateway.config import TokenSettings
from gateway.errors import Unauthenticated
from gateway.identifiers import IdentifierError, normalise_client
from gateway.oauth.jwks import TOKEN_ALGORITHMS

LEEWAY = 30  # seconds of clock skew tolerated on exp and nbf, unless token.leeway says otherwise
_CACHE_MAX = 50_000
_TYPES = ("at+jwt", "application/at+jwt")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    client_id: str
    scopes: frozenset[str]
    expires_at: int
    jti: str
    issuer: str = ""


@dataclass
class IssuerKeys:
    """What a token of one issuer is checked against."""

    issuer: str
    audience: str
    keys: KeySet
    algorithms: list[str]
    client_claim: str = "client_id"
    # Called when a token names a kid not in ``keys``: True when the keys were reloaded just now
    # (the token is then checked once more), False when a reload was only asked for.
    on_unknown_key: Callable[[], bool] | None = None


class MalformedAuthorization(Unauthenticated):
    """An Authorization header that is not one bearer token: RFC 6750 3.1 invalid_request, 400."""

    status = 400
    title = "Bad request"
    code = "Client.InvalidRequest"
    type_slug = "invalid-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, error="invalid_request")


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
        raise MalformedAuthorization("the Authorization header holds no single bearer token")
    return token


def _public(keys: KeySet) -> KeySet:
    return KeySet.import_key_set(keys.as_dict(private=False))


class TokenVerifier:
    def __init__(self, keys: KeySet, settings: TokenSettings) -> None:
        self._settings = settings
        self._leeway = settings.leeway
        self._cache: dict[str, TokenInfo] = {}
        self._issuers: dict[str, IssuerKeys] = {}
        self.revoked: frozenset[str] = frozenset()
        self.disabled: frozenset[str] = frozenset()
        self.set_keys(keys)

    # -- state the refresher keeps current ----------------------------------------------------------

    def set_keys(self, keys: KeySet, on_unknown_key: Callable[[], bool] | None = None) -> None:
        """Trust these keys for the gateway's own tokens (each with the algorithm it declares)."""
        own = self._issuers.get(self._settings.issuer)
        # Both algorithms, so that a key of the other kind is found after a rotation; joserfc
        # still ties each to its key type (an EC key never verifies EdDSA, and no HMAC at all).
        self._issuers[self._settings.issuer] = IssuerKeys(
            self._settings.issuer, self._settings.audience, _public(keys), list(TOKEN_ALGORITHMS),
            on_unknown_key=on_unknown_key or (own.on_unknown_key if own else None))

    def trust(self, issuer: IssuerKeys) -> None:
        """Trust (or update the keys of) an outside issuer."""
        issuer.keys = _public(issuer.keys) if issuer.keys.keys else issuer.keys
        self._issuers[issuer.issuer] = issuer

    def issuers(self) -> Mapping[str, IssuerKeys]:
        return self._issuers

    def update(self, *, revoked: frozenset[str] | None = None,
               disabled: frozenset[str] | None = None) -> None:
        if revoked is not None:
            self.revoked = revoked
        if disabled is not None:
            self.disabled = disabled

    def revoke_locally(self, jti: str) -> None:
        """A revocation this worker took: effective here at once, elsewhere at the next reload."""
        self.revoked = self.revoked | {jti}

    # -- the check ---------------------------------------------------------------------------------

    def verify(self, token: str) -> TokenInfo:
        now = time.time()
        info = self._cache.get(token)
        if info is None or info.expires_at + self._leeway < now:
            if info is not None:
                del self._cache[token]
            info = self._verify(token, now)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()  # bounded memory; the next calls simply verify again
            self._cache[token] = info
        if info.jti in self.revoked:
            raise Unauthenticated("the access token has been revoked")
        if info.client_id in self.disabled:
            raise Unauthenticated("the token's client is disabled")
        return info

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of a token (for introspection), or Unauthenticated."""
        info = self.verify(token)
        return self._claims_of(token) | {"client_id": info.client_id}

    @staticmethod
    def _claims_of(token: str) -> dict[str, Any]:
        try:
            payload = orjson.loads(jws.extract_compact(token.encode("ascii")).payload)
        except (JoseError, ValueError, UnicodeEncodeError, orjson.JSONDecodeError) as exc:
            raise Unauthenticated("the access token is malformed") from exc
        if not isinstance(payload, dict):
            raise Unauthenticated("the access token's payload is not a JSON object")
        return payload

    def _decode(self, token: str, issuer: IssuerKeys, retry: bool = True) -> jwt.Token:
        try:
            return jwt.decode(token, issuer.keys, algorithms=issuer.algorithms)
        except InvalidKeyIdError as exc:
            if retry and issuer.on_unknown_key is not None and issuer.on_unknown_key():
                return self._decode(token, self._issuers[issuer.issuer], retry=False)
            raise Unauthenticated("the token is signed with a key this gateway does not know") from exc
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise Unauthenticated("the access token is malformed or its signature is not valid") \
                from exc

    def _verify(self, token: str, now: float) -> TokenInfo:
        issuer = self._issuers.get(str(self._claims_of(token).get("iss")))
        if issuer is None:
            raise Unauthenticated("the token was issued by an issuer this gateway does not trust")
        decoded = self._decode(token, issuer)
        header, claims = decoded.header, decoded.claims
        if str(header.get("typ", "")).lower() not in _TYPES:
            raise Unauthenticated("the token is not an access token (typ must be at+jwt)")
        if claims.get("iss") != issuer.issuer:  # pragma: no cover - chosen by iss above
            raise Unauthenticated("the token was issued by another issuer")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if issuer.audience not in audiences:
            raise Unauthenticated("the token is meant for another audience")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or isinstance(exp, bool) or not _is_time(nbf):
            raise Unauthenticated("the token's exp or nbf claim is missing or not a number")
        if exp + self._leeway < now:
            raise Unauthenticated("the access token has expired; get a new one")
        if nbf - self._leeway > now:
            raise Unauthenticated("the access token is not valid yet")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Unauthenticated("the token has no jti (RFC 9068 requires one)")
        client_id = claims.get(issuer.client_claim) or claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise Unauthenticated("the token names no client")
        try:
            client_id = normalise_client(client_id)
        except IdentifierError:
            raise Unauthenticated("the token's client is not a member or subsystem id") from None
        scope = claims.get("scope", "")
        return TokenInfo(client_id=client_id, scopes=frozenset(str(scope).split()),
                         expires_at=int(exp), jti=jti, issuer=issuer.issuer)


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
