"""asn1crypto's RFC 4518 string preparation of name values, remembered per value.

Comparing two X.509 names (RFC 5280, 7.1) prepares every value of both first (map, NFKC, prohibit,
bidirectional check, insignificant spaces) in pure Python, one character at a time: 5 to 70 µs a
value, about 30 for a Vietnamese signer's name. asn1crypto remembers the result on the parsed value,
but every signature brings freshly parsed certificates, pyHanko compares the signer's issuer with
each certificate of a CMS (more than once per verification, on copies), and certvalidator names
every certificate it registers: a signed PDF cost some thirty preparations of the same few names.

``install`` makes ``NameTypeAndValue._ldap_string_prep`` remember its answers for short strings
in a bounded LRU (the preparation depends on the string alone). What is not remembered: a
non-string value (asn1crypto's own error), a string over ``MAX_LENGTH`` characters (real name
values are not: X.520 bounds the usual attributes at 64 or 128), and a refusal (the ``ValueError``
is raised again each time, as ``functools.lru_cache`` does not keep exceptions).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from asn1crypto import x509

__all__ = ["MAX_LENGTH", "MAX_VALUES", "install", "installed", "prepare"]

MAX_LENGTH = 256
MAX_VALUES = 4096
_ASN1CRYPTO_PREP: Callable[[Any, Any], str] = x509.NameTypeAndValue._ldap_string_prep


@lru_cache(maxsize=MAX_VALUES)
def _remembered(value: str) -> str:
    return _ASN1CRYPTO_PREP(None, value)  # the method never reads self


def prepare(name_value: Any, string: Any) -> str:
    """asn1crypto's preparation of ``string``, remembered when it is a short ``str``."""
    if type(string) is str and len(string) <= MAX_LENGTH:
        return _remembered(string)
    return _ASN1CRYPTO_PREP(name_value, string)


def install() -> None:
    """Make asn1crypto prepare name values with ``prepare`` (idempotent)."""
    if x509.NameTypeAndValue._ldap_string_prep is _ASN1CRYPTO_PREP:  # someone else's replacement stays
        x509.NameTypeAndValue._ldap_string_prep = prepare


def installed() -> bool:
    """Whether asn1crypto now prepares name values with ``prepare``."""
    return x509.NameTypeAndValue._ldap_string_prep is prepare
