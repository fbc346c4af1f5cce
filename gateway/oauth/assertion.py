"""The client's side of ``private_key_jwt`` (RFC 7523 2.2): a short-lived JWT signed with the
client's private key, ``iss`` and ``sub`` its client id, ``aud`` the token endpoint, a fresh ``jti``.
Used by ``lienthong token``, the demo and the tests."""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.oauth.jwks import ASSERTION_ALGORITHMS

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_assertion(private_jwk: dict[str, Any], client_id: str, audience: str, *,
                     lifetime: int = 60, **extra: Any) -> dict[str, str]:
    """The form fields that authenticate ``client_id`` with its private key."""
    key_set = KeySet.import_key_set({"keys": [private_jwk]})
    key = key_set.keys[0]
    alg = str(key.alg or ("EdDSA" if key.key_type == "OKP" else "ES256"))
    if alg not in ASSERTION_ALGORITHMS:
        raise ValueError(f"the key's algorithm {alg} is not one of {', '.join(ASSERTION_ALGORITHMS)}")
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "jti": secrets.token_urlsafe(24),
              "iat": now, "exp": now + lifetime, **extra}
    header = {"alg": alg, "typ": "JWT", **({"kid": key.kid} if key.kid else {})}
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jwt.encode(header, claims, key_set, algorithms=[alg])}
