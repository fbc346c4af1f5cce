"""JSON Web Key sets: the clients' public keys and the algorithms the gateway accepts.

Signatures are checked only with the algorithms listed here, each tied to the kind of key that may
use it, so that a token or an assertion can never choose ``none`` or HMAC with a public key.
"""

from __future__ import annotations

import warnings
from typing import Any

from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet

# joserfc refuses EdDSA unless it is named explicitly, and warns that RFC 9864 prefers "Ed25519";
# RFC 9068 and this gateway's configuration still say EdDSA, so it is named and the warning muted.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

# Algorithms of access tokens the gateway signs.
TOKEN_ALGORITHMS = ("ES256", "EdDSA")
# Algorithms a client may sign its private_key_jwt assertion with (asymmetric only).
ASSERTION_ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
_KEY_TYPES = ("EC", "OKP", "RSA")


def public_jwks(data: Any) -> KeySet:
    """Import a set of public keys, or raise ValueError saying what is wrong with it."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ValueError("a JWKS must be a mapping with a non-empty list 'keys'")
    for i, key in enumerate(data["keys"]):
        if not isinstance(key, dict):
            raise ValueError(f"keys[{i}] is not a JWK object")
        if key.get("kty") not in _KEY_TYPES:
            raise ValueError(f"keys[{i}]: kty must be one of {', '.join(_KEY_TYPES)} (public keys only)")
        if any(m in key for m in _PRIVATE_MEMBERS):
            raise ValueError(f"keys[{i}] holds private key material: register the public key only")
    try:
        return KeySet.import_key_set(data)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"the JWKS cannot be read: {exc}") from None
