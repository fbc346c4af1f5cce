"""Outside issuers whose access tokens the gateway accepts (``token.trusted_issuers``).

Such an issuer (a national identity platform, say) publishes its public keys at a JWKS URL. The
gateway fetches them at start and every ``refresh`` seconds, and sooner when a token names a key it
does not know yet (at most once every few seconds), never while it checks a token: a token that
arrives before its key is answered 401 and succeeds once the keys are in.
"""

from __future__ import annotations

import time

import httpx
import structlog
from joserfc.jwk import KeySet

from gateway.config import TrustedIssuer
from gateway.oauth.jwks import public_jwks
from gateway.oauth.verifier import IssuerKeys

log = structlog.get_logger("lienthong.oauth")
MIN_REFETCH = 5.0  # seconds between fetches asked for by unknown key ids
_MAX_JWKS = 256 * 1024


class ExternalIssuer:
    def __init__(self, cfg: TrustedIssuer, default_audience: str) -> None:
        self.cfg = cfg
        self.keys = IssuerKeys(cfg.issuer, cfg.audience or default_audience, KeySet([]),
                               list(cfg.algorithms), cfg.client_claim)
        self.fetched_at = 0.0

    async def refresh(self, http: httpx.AsyncClient) -> bool:
        """Fetch the issuer's JWKS; True when its keys were replaced."""
        self.fetched_at = time.monotonic()
        try:
            r = await http.get(self.cfg.jwks_url, timeout=5.0)
            r.raise_for_status()
            if len(r.content) > _MAX_JWKS:
                raise ValueError("the JWKS is too large")
            keys = public_jwks(r.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("external_jwks_failed", issuer=self.cfg.issuer, url=self.cfg.jwks_url,
                        error=str(exc)[:200])
            return False
        self.keys.keys = keys
        log.info("external_jwks_loaded", issuer=self.cfg.issuer, keys=len(keys.keys))
        return True

    def due(self, asked: bool) -> bool:
        since = time.monotonic() - self.fetched_at
        return since >= self.cfg.refresh or (asked and since >= MIN_REFETCH)
