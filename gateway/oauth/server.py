"""The authorization server: OAuth 2.0 client credentials (RFC 6749 4.4) on authlib's server core.

- Clients authenticate with ``client_secret_basic`` (secrets checked against argon2 hashes) or
  ``private_key_jwt`` (RFC 7523: a JWT signed with a key of the client's registered JWKS, its
  ``aud`` naming this server, ``exp`` checked, its ``jti`` used once: see ``gateway.oauth.store``).
  A request may use one method only.
- Access tokens are JWTs in the RFC 9068 profile (``typ: at+jwt``), signed with the newest signing
  key (ES256 or EdDSA, each key with its own algorithm), carrying ``iss``, ``aud``, ``sub``,
  ``client_id``, ``scope``, ``jti``, ``iat``, ``nbf`` and ``exp``.
- Introspection (RFC 7662): a client may introspect its own tokens, a client holding the
  ``introspect`` scope any token; every other answer is ``{"active": false}``.
- Revocation (RFC 7009): a client revokes its own tokens; the ``jti`` is stored until the token
  would have expired and refused by every worker within ``token.refresh`` seconds.

Everything here is synchronous (argon2 and the database are blocking): the web layer runs it in a
worker thread.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet

from gateway.config import TokenSettings
from gateway.errors import Unauthenticated
from gateway.oauth.clients import PRIVATE_KEY_JWT, SECRET_BASIC, ClientRecord
from gateway.oauth.jwks import ASSERTION_ALGORITHMS, public_jwks
from gateway.oauth.secrets import check_secret
from gateway.oauth.store import ReplayCache, RevocationStore
from gateway.oauth.verifier import TokenVerifier

GRANT_TYPE = "client_credentials"
AUTH_METHODS = [SECRET_BASIC, PRIVATE_KEY_JWT]
INTROSPECT_SCOPE = "introspect"
MAX_ASSERTION_LIFETIME = 3600  # seconds: bounds how long the replay cache must remember a jti

ClientLookup = Callable[[str], ClientRecord | None]
# A key nobody holds, checked for clients without keys, so that their answer is a wrong signature's.
_STRANGER = KeySet([ECKey.generate_key("P-256", parameters={"alg": "ES256"})])
_NOBODY = ClientRecord(id="", name="", secret_hash=None, jwks=None, scopes=(), enabled=False, source="",
                       created_us=0, updated_us=0)


class OAuthClient(ClientMixin):
    """A registered client as authlib sees it."""

    def __init__(self, client: ClientRecord) -> None:
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
        return check_secret(self.client.secret_hash, client_secret)  # argon2 runs even without a hash

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.client.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE


class Grant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        """Also refuses an authenticated client whose agency is not current (a former agency's,
        after its last day: gateway/agencies.py), naming the successor. Only once the credentials
        are right, so that the answer tells an outsider nothing about which ids exist."""
        super().validate_token_request()
        refusal = self.server.refuse_client(self.request.client.get_client_id())
        if refusal is not None:
            raise UnauthorizedClientError(description=refusal)

    def validate_requested_scope(self) -> None:
        """A scope the client is not registered for is refused (RFC 6749 5.2 invalid_scope)."""
        scope = self.request.payload.scope
        registered = set(self.request.client.client.scopes)
        if scope and not set(scope_to_list(scope)) <= registered:
            raise InvalidScopeError(description="the client is not registered for the scope(s) "
                                    + " ".join(sorted(set(scope_to_list(scope)) - registered)))


class PrivateKeyJwt(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication (RFC 7523 2.2, OpenID Connect Core 9)."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, audiences: list[str], replay: ReplayCache, leeway: int) -> None:
        super().__init__(validate_jti=True, leeway=leeway)
        self._audiences = audiences
        self._replay = replay
        self._now = time.time

    def __call__(self, query_client: Any, request: Any) -> Any:
        client_id = request.form.get("client_id")
        client = super().__call__(query_client, request)
        if client is not None and client_id and client_id != client.get_client_id():
            raise InvalidClientError(description="client_id differs from the assertion's subject")
        return client

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        if not client.client.jwks:  # unknown, disabled or secret-only: fail as a bad signature does
            return _STRANGER
        try:
            return public_jwks(client.client.jwks)
        except ValueError as exc:  # pragma: no cover - checked when registered
            raise InvalidClientError(description="the client's registered keys are unusable") from exc

    def process_assertion_claims(self, assertion: str, resolve_key: Key | KeySet) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description=f"the client assertion is not valid: {exc.error}") \
                from exc
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > self._now() + MAX_ASSERTION_LIFETIME + self.leeway:
            raise InvalidClientError(description="the client assertion lives longer than "
                                     f"{MAX_ASSERTION_LIFETIME} s")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        return self._replay.first_use(str(claims["sub"]), jti, int(claims["exp"]) + self.leeway)


class TokenSigner:
    """Signs RFC 9068 access tokens with the newest key of a key set."""

    def __init__(self, keys: KeySet, settings: TokenSettings) -> None:
        self._settings = settings
        self.set_keys(keys)

    def set_keys(self, keys: KeySet) -> None:
        key = keys.keys[-1]
        self._key, self._keys, self._alg = key, KeySet([key]), str(key.alg or self._settings.algorithm)

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
        header = {"alg": self._alg, "typ": "at+jwt", "kid": self._key.kid}
        return jwt.encode(header, claims, self._keys, algorithms=[self._alg])


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token, as the introspection and revocation endpoints handle it."""

    claims: dict[str, Any]

    @property
    def client_id(self) -> str:
        return str(self.claims["client_id"])

    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.get_client_id()

    def is_expired(self) -> bool:
        return False  # the verifier refused expired tokens already

    def is_revoked(self) -> bool:
        return False  # likewise


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def __init__(self, verifier: TokenVerifier) -> None:
        super().__init__()
        self._verifier = verifier

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | None:
        try:
            return AccessToken(self._verifier.claims(token_string))
        except Unauthenticated:
            return None

    def check_permission(self, token: AccessToken, client: OAuthClient, request: Any) -> bool:
        return token.check_client(client) or INTROSPECT_SCOPE in client.client.scopes

    def introspect_token(self, token: AccessToken) -> dict[str, Any]:
        keep = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")
        return {"active": True, "token_type": "Bearer",
                **{k: token.claims[k] for k in keep if k in token.claims}}


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def __init__(self, verifier: TokenVerifier, store: RevocationStore, issuer: str) -> None:
        super().__init__()
        self._verifier = verifier
        self._store = store
        self._issuer = issuer

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | None:
        try:
            claims = self._verifier.claims(token_string)
        except Unauthenticated:
            return None  # invalid, expired or revoked already: nothing to do (RFC 7009 2.2)
        return AccessToken(claims) if claims.get("iss") == self._issuer else None

    def revoke_token(self, token: AccessToken, request: Any) -> None:
        jti = str(token.claims["jti"])
        self._store.revoke(jti, token.client_id, int(token.claims["exp"]))
        self._verifier.revoke_locally(jti)


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The parts of an HTTP request the endpoints read, parsed by the web layer."""

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


def endpoint_urls(issuer: str) -> dict[str, str]:
    base = issuer.rstrip("/")
    return {"token": f"{base}/oauth/token", "introspection": f"{base}/oauth/introspect",
            "revocation": f"{base}/oauth/revoke"}


class TokenServer(AuthorizationServer):
    def __init__(self, clients: ClientLookup | Mapping[str, ClientRecord], keys: KeySet,
                 settings: TokenSettings, *, verifier: TokenVerifier, replay: ReplayCache,
                 revocations: RevocationStore,
                 refuse_client: Callable[[str], str | None] = lambda client_id: None) -> None:
        super().__init__()
        self._lookup: ClientLookup = clients.get if isinstance(clients, Mapping) else clients
        self.refuse_client = refuse_client  # why an authenticated client gets no token now, or None
        self.signer = TokenSigner(keys, settings)
        self.register_grant(Grant)
        self.register_token_generator(
            "default", BearerTokenGenerator(self.signer, expires_generator=lambda c, g: settings.lifetime))
        audiences = [settings.issuer, *endpoint_urls(settings.issuer).values()]
        self.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJwt(audiences, replay, settings.leeway))
        self.register_endpoint(Introspection(verifier))
        self.register_endpoint(Revocation(verifier, revocations, settings.issuer))

    def query_client(self, client_id: str) -> OAuthClient:
        """The client, or for an unknown or disabled id a stand-in that fails every check the way a
        wrong secret does, after the same argon2 work: the answer, its body and its time do not tell
        which ids exist."""
        client = self._lookup(client_id)
        if client is None or not client.enabled:
            client = replace(_NOBODY, id=client_id)
        return OAuthClient(client)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """JWT access tokens are self-contained; nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal receivers."""

    def create_oauth2_request(self, request: TokenRequest | OAuth2Request) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        oauth_request = _Request(request)
        authorization = request.headers.get("authorization", "")
        has_basic = authorization.lower().startswith("basic ")
        if has_basic and ("client_assertion" in request.form or "client_secret" in request.form):
            raise _OneMethod
        if has_basic and not _basic_is_text(authorization[6:]):
            raise _NotText
        return oauth_request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> TokenResponse:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return TokenResponse(status, data, list(headers))

    def _guard(self, answer: Callable[[], TokenResponse]) -> TokenResponse:
        try:
            return answer()
        except _OneMethod:
            err = InvalidRequestError(description="use one client authentication method per request "
                                      "(RFC 6749 2.3)")
            return self.handle_response(*err())
        except _NotText:
            refused = InvalidClientError(status_code=401, description="the Basic credentials are not "
                                         "UTF-8 text (RFC 7617)")
            return self.handle_response(*refused())

    def issue(self, request: TokenRequest) -> TokenResponse:
        """Answer one token request (success or an RFC 6749 5.2 error)."""
        if not request.form.get("grant_type"):
            return self.handle_response(*InvalidRequestError(description="grant_type is missing")())
        return self._guard(lambda: self.create_token_response(request))

    def introspect(self, request: TokenRequest) -> TokenResponse:
        return self._guard(lambda: self.create_endpoint_response(
            Introspection.ENDPOINT_NAME, request))

    def revoke(self, request: TokenRequest) -> TokenResponse:
        return self._guard(lambda: self.create_endpoint_response(
            Revocation.ENDPOINT_NAME, request))


class _OneMethod(Exception):
    """The request carries more than one client authentication method."""


class _NotText(Exception):
    """The Basic credentials decode to bytes that are not UTF-8 (authlib would fail on them)."""


def _basic_is_text(credentials: str) -> bool:
    """False only for valid base64 that is not UTF-8; other malformed headers authlib refuses."""
    try:
        base64.b64decode(credentials.strip()).decode("utf-8")
    except UnicodeDecodeError:
        return False
    except ValueError:
        return True
    return True
