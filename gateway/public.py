"""The gateway's public address, and whether a request reached it over TLS.

Addresses the gateway publishes (a WSDL's ``soap:address``, the console's OpenID Connect redirect)
come from ``public.url`` in the configuration, never from the request's ``Host`` header, which any
caller sets. A request counts as HTTPS when the public URL is ``https``, when the connection itself
is, or when ``X-Forwarded-Proto: https`` comes from one of ``public.trusted_proxies`` (the TLS proxy
in front); from anyone else the header is ignored. Likewise the client's address is the connection's
peer, or behind a trusted proxy the nearest ``X-Forwarded-For`` entry that is not one of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, MutableMapping
from functools import lru_cache
from typing import Any

from gateway.config import Config

__all__ = ["client_address", "is_https", "public_base"]


def public_base(config: Config) -> str:
    """``public.url`` without its trailing slash, or the listening address when none is set."""
    if config.public.url:
        return config.public.url.rstrip("/")
    host = config.listen.host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{config.listen.port}"


@lru_cache(maxsize=64)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(peer: str | None, proxies: tuple[str, ...]) -> bool:
    if not peer or not proxies:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in _networks(proxies))


def is_https(scope: MutableMapping[str, Any] | Mapping[str, Any], config: Config) -> bool:
    """Whether the client reached the gateway over TLS (see the module's docstring)."""
    if (config.public.url or "").lower().startswith("https://") or scope.get("scheme") == "https":
        return True
    client = scope.get("client")
    if not _trusted(client[0] if client else None, tuple(config.public.trusted_proxies)):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-proto":
            return bool(value.split(b",")[0].strip().lower() == b"https")
    return False


def client_address(scope: MutableMapping[str, Any] | Mapping[str, Any], config: Config) -> str:
    """Where the request came from (see the module's docstring); "" when nobody can tell."""
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    proxies = tuple(config.public.trusted_proxies)
    if not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"
            for h in value.decode("latin-1").split(",")]
    for hop in reversed(hops):  # the right-most entries were added by our own proxies
        if hop and not _trusted(hop, proxies):
            return str(hop)[:64]
    return peer
