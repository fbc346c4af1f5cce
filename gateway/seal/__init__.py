"""The gateway seal: the gateway signs what it hands on with its own key (docs/signatures.md#gateway-seal).

- Answers of the REST and SOAP faces (``Pipeline`` seals each rendered answer once, before its
  audit record, so the record's response digest is of the bytes that leave).
- Requests to upstreams: the pipeline marks the connector call (``outbound``) and
  ``gateway.upstream.send`` adds the seal over the exact bytes it puts on the wire, whichever
  connector built them.

The seal is a detached JWS (RFC 7515 compact, RFC 7797 ``b64: false``) over the body's bytes in the
``X-Gateway-Seal`` header: ``BASE64URL(header)..BASE64URL(signature)``, the protected header
``{"alg", "b64": false, "crit": ["b64"], "kid"}`` (and ``x5c`` when configured). An XML answer
may instead carry an enveloped XML-DSig signature (``seal.xml: enveloped``). The header is encoded
once per key: a seal costs one SHA-256 of the body and one signature (ES256: some 40 µs).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from gateway.seal.keys import (
    SealKey,
    SealKeyError,
    load_certificates,
    load_folder,
    load_pair,
    public_jwk,
    thumbprint,
)

if TYPE_CHECKING:
    from gateway.config import Config, SealSettings
    from gateway.context import Rendered
    from gateway.spool import Spooled

__all__ = ["HEADER", "SealKeyError", "Sealer", "load_sealer", "outbound", "outbound_headers"]

HEADER = "X-Gateway-Seal"
_HEADER_LOWER = HEADER.lower()
_XML_TYPES = ("application/xml", "text/xml")


class Sealer:
    """Seals bodies with the signing key; ``jwks`` publishes it and the retired keys."""

    def __init__(self, key: SealKey, published: list[SealKey], settings: SealSettings) -> None:
        if key.private is None or key.algorithm is None:
            raise SealKeyError(f"seal key {key.kid} has no private key")
        self.key = key
        self.settings = settings
        header: dict[str, Any] = {"alg": key.algorithm, "b64": False, "crit": ["b64"], "kid": key.kid}
        if settings.x5c:
            header["x5c"] = public_jwk(key)["x5c"]
        self._prefix = _b64url(json.dumps(header, separators=(",", ":")).encode())
        self._input_prefix = self._prefix.encode("ascii") + b"."
        self._sign = _signer(key)
        seen: dict[str, dict[str, Any]] = {}
        for item in [*published, key]:
            seen[item.kid] = public_jwk(item)  # the signing key's entry (with its alg) wins
        self.jwks: dict[str, Any] = {"keys": list(seen.values())}

    def seal(self, body: bytes | Spooled) -> str:
        """The ``X-Gateway-Seal`` value for ``body``: ``header..signature``. A spooled body
        (gateway/spool.py) is hashed from its file piece by piece."""
        pieces = (body,) if isinstance(body, bytes | bytearray | memoryview) else body.pieces()
        return f"{self._prefix}..{_b64url(self._sign(self._input_prefix, pieces))}"

    def answer(self, rendered: Rendered, protocol: str) -> Rendered:
        """``rendered`` sealed: an enveloped signature in an XML answer where configured (never in a
        SOAP envelope, nor in an answer sent from a file), else the header."""
        spooled = rendered.spooled  # a large fetched package: the header, hashed from its file
        if spooled is not None:
            return replace(rendered, headers=[*rendered.headers, (_HEADER_LOWER, self.seal(spooled))])
        if self.settings.xml == "enveloped" and protocol != "soap":
            media = next((v for k, v in rendered.headers if k.lower() == "content-type"), "")
            media = media.partition(";")[0].strip().lower()
            if media in _XML_TYPES or media.endswith("+xml"):
                enveloped = self.envelop(rendered.body)
                if enveloped is not None:
                    return replace(rendered, body=enveloped)
        return replace(rendered, headers=[*rendered.headers, (_HEADER_LOWER, self.seal(rendered.body))])

    def envelop(self, body: bytes) -> bytes | None:
        """``body`` with an enveloped XML-DSig signature as the root's last child, or None when it
        is not XML that can carry one (unreadable, or a SOAP envelope): then the header seals it."""
        from gateway.seal.xml import envelop

        return envelop(body, self.key)


def _signer(key: SealKey) -> Any:
    """(signing input's prefix, the body's pieces) -> the JWS signature (ES256: r||s, 32 bytes each,
    not DER). The input is hashed in parts rather than joined: no copy of a large body."""
    private = key.private
    prehashed = Prehashed(hashes.SHA256())

    def digest(prefix: bytes, pieces: Iterable[bytes]) -> bytes:
        h = hashes.Hash(hashes.SHA256())
        h.update(prefix)
        for piece in pieces:
            h.update(piece)
        return h.finalize()

    if isinstance(private, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(prehashed)

        def es256(prefix: bytes, pieces: Iterable[bytes]) -> bytes:
            r, s = decode_dss_signature(private.sign(digest(prefix, pieces), ecdsa))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return es256
    assert private is not None
    # PS256: RFC 7518 section 3.5 sets the salt as long as the hash.
    pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32) if key.algorithm == "PS256" \
        else padding.PKCS1v15()
    return lambda prefix, pieces: private.sign(digest(prefix, pieces), pad, prehashed)


def load_sealer(config: Config) -> Sealer | None:
    """The configured sealer, None when sealing is off; ``SealKeyError`` names what is wrong."""
    settings = config.seal
    if not settings.enabled:
        return None
    folder = config.path(config.keys_dir) / settings.folder
    folder_key, published = load_folder(folder, settings.algorithm)
    if settings.key is not None and settings.certificate is not None:
        key = load_pair(config.path(settings.key), config.path(settings.certificate), settings.kid,
                        settings.algorithm)
    elif folder_key is not None:
        key = folder_key
    else:
        raise SealKeyError(f"seal.enabled is true and {folder} holds no seal key (<kid>.key with "
                           "<kid>.pem): run 'lienthong seal rotate', or set seal.key and "
                           "seal.certificate")
    for previous in settings.previous:
        chain = load_certificates(config.path(previous.certificate))
        published.append(SealKey(previous.kid or thumbprint(chain[0]), tuple(chain)))
    return Sealer(key, published, settings)


_OUTBOUND: ContextVar[Sealer | None] = ContextVar("lienthong_seal_outbound", default=None)


@contextmanager
def outbound(sealer: Sealer | None) -> Iterator[None]:
    """Within: requests ``gateway.upstream.send`` puts on the wire are sealed by ``sealer``."""
    token = _OUTBOUND.set(sealer)
    try:
        yield
    finally:
        _OUTBOUND.reset(token)


def outbound_headers(content: bytes | Spooled | None,
                     headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """``headers`` with the seal of ``content`` when inside ``outbound``; else as they are."""
    sealer = _OUTBOUND.get()
    if sealer is None:
        return headers
    return {**(headers or {}), HEADER: sealer.seal(content or b"")}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
