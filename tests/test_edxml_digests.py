"""Reading edXML for digests only (``Limits.keep_attachments`` off, as the gateway's desk reads): the
same sizes and SHA-256 as a full read, the same refusals, and no attachment bytes kept."""

from __future__ import annotations

import io

import pytest

from connectors.dms import data
from gateway.edxml import EdxmlError, Limits, parse


def test_digests_only_match_a_full_read() -> None:
    """Each attachment's size and digest are those of a full read; its bytes are not kept."""
    package = data.package_bytes("000.00.00.H60", ["000.00.00.H41"], 9, attachments=3,
                                 attachment_size=200_000)
    with parse(package) as full, parse(package, Limits(keep_attachments=False)) as digests:
        assert [(a.content_id, a.size, a.sha256) for a in digests.attachments] == [
            (a.content_id, a.size, a.sha256) for a in full.attachments]
        assert digests.header == full.header
        with pytest.raises(io.UnsupportedOperation):
            digests.attachments[0].read()


def test_digests_only_still_refuses_bad_base64() -> None:
    """The bytes are decoded, so an attachment that is not base64 is refused all the same."""
    package = data.package_bytes("000.00.00.H60", ["000.00.00.H41"], 10, attachments=1, attachment_size=3000)
    start = package.index(b"ContentTransferEncoded>") + len(b"ContentTransferEncoded>")
    broken = package[:start] + b"!!!!" + package[start + 4:]
    with pytest.raises(EdxmlError) as refused:
        parse(broken, Limits(keep_attachments=False))
    assert refused.value.code == "bad-base64"
