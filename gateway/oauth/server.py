"""The token endpoint: OAuth 2.0 client credentials (RFC 6749 4.4) on authlib's server core.

Clients authenticate with ``client_secret_basic``; secrets are checked against argon2 hashes.
Access tokens are JWTs in the RFC 9068 profile (``typ: at+jwt``), signed with the newest key of
the keys folder (ES256 by default), carrying ``iss``, ``aud``, ``sub``, ``client_id``, ``scope``,
``jti``, ``iat`` and ``exp``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.config import Client, TokenSettings
from gateway.oauth.secrets import check_secret

GRANT_TYPE = "client_credentials"


class OAuthClient(ClientMixin):
    """A catalog client as authlib sees it."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def get_client_id(self) -> str:
        return self.client.id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        registered = list(self.client.scopes)
        if not scope:
            return " ".join(registered)
        return " ".join(s for s in scope_to_list(scope) if s in registered)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return check_secret(self.client.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE


class TokenSigner:
    """Signs RFC 9068 access tokens with the newest key of a key set."""

    def __init__(self, keys: KeySet, settings: TokenSettings) -> None:
        self._key = keys.keys[-1]
        self._keys = KeySet([self._key])
        self._settings = settings

    def __call__(self, client: OAuthClient, grant_type: str, user: Any, scope: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": client.get_client_id(),
            "client_id": client.get_client_id(),
            "scope": scope,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "nbf": now,
            "exp": now + self._settings.lifetime,
        }
        header = {"alg": self._settings.algorithm, "typ": "at+jwt", "kid": self._key.kid}
        return jwt.encode(header, claims, self._keys, algorithms=[self._settings.algorithm])


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The parts of an HTTP request the token endpoint reads, parsed by the web layer."""

    method: str
    uri: str
    headers: Mapping[str, str]
    form: Mapping[str, str]


class _Request(OAuth2Request):
    def __init__(self, req: TokenRequest) -> None:
        super().__init__(req.method, req.uri, headers=req.headers)  # must stay case-insensitive
        self.payload = BasicOAuth2Payload(dict(req.form))
        self._form = dict(req.form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True, slots=True)
class TokenResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    client_id: str | None = None


class TokenServer(AuthorizationServer):
    def __init__(self, clients: Mapping[str, Client], keys: KeySet, settings: TokenSettings) -> None:
        super().__init__()
        self._clients = clients
        self.register_grant(ClientCredentialsGrant)
        self.register_token_generator(
            "default", BearerTokenGenerator(TokenSigner(keys, settings),
                                            expires_generator=lambda c, g: settings.lifetime))

    def query_client(self, client_id: str) -> OAuthClient | None:
        client = self._clients.get(client_id)
        return OAuthClient(client) if client is not None and client.enabled else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """JWT access tokens are self-contained; nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal receivers."""

    def create_oauth2_request(self, request: TokenRequest) -> OAuth2Request:
        return _Request(request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> TokenResponse:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return TokenResponse(status, data, list(headers))

    def issue(self, request: TokenRequest) -> TokenResponse:
        """Answer one token request (success or an RFC 6749 5.2 error)."""
        response: TokenResponse = self.create_token_response(request)
        return response
