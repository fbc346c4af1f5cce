"""The demo's signed-dossier scene: a one-stop system pushes dossiers signed with the demo CA's keys.

``lienthong init`` writes a throwaway CA under ``pki/`` (gateway/demo_pki.py) and makes it the
gateway's trust store; the catalog's ``DongBoHoSoMCKySo`` (the portal's dossier push, signatures
required) verifies each dossier's detached JWS (``X-JWS-Signature``, RFC 7515 detached, ``x5c``
chain) before storing it. Tuyên Quang's one-stop system sends four dossiers:

1. one signed by the citizen, and 2. one by a one-stop officer: accepted (202) and delivered;
3. one signed by the officer, then changed (its due date moved): refused, 400 ``bad-signature``;
4. one signed with a revoked certificate (in the CRL on file): refused, 403 ``revoked``;

then the auditor's access report of the citizen who owns the first and the last shows each
exchange's signature verdict. ``lienthong demo`` (gateway/demo.py) plays it and prints the checks.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey
from rich.table import Table

from gateway.demo_pki import Signer, load_signer

__all__ = ["SIGNED_PUSH", "SignedOutcome", "sign_detached", "signed_dossiers", "signed_table"]

SIGNED_PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMCKySo"
AUDITOR = "VN/GOV/000.00.00.G22/KIEMTOAN"

Exchange = Callable[..., Awaitable[httpx.Response]]  # (label, token, client, service, body, **headers)
Check = Callable[[str, bool, str], None]


class _Registry(jws.JWSRegistry):
    max_header_length = 16_384  # x5c: two certificates in base64


_REGISTRY = _Registry(algorithms=["ES256", "RS256"])


def sign_detached(body: bytes, signer: Signer) -> str:
    """A detached compact JWS (``header..signature``, RFC 7515 appendix F) over ``body``'s exact
    bytes, with the signer's chain in ``x5c``: what ``X-JWS-Signature`` carries."""
    pem = signer.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    rsa_key = isinstance(signer.key, rsa.RSAPrivateKey)
    key = RSAKey.import_key(pem) if rsa_key else ECKey.import_key(pem)
    header = {"alg": "RS256" if rsa_key else "ES256",
              "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                      for c in signer.chain]}
    head, _, signature = jws.serialize_compact(header, body, key, registry=_REGISTRY).split(".")
    return f"{head}..{signature}"


@dataclass(frozen=True)
class SignedOutcome:
    code: str
    what: str
    signer: str
    status: int
    reason: str  # the refusal's reason, "" when accepted


async def signed_dossiers(http: httpx.AsyncClient, base: str, token: str, client: str, pki: Path,
                          portal_sim: str, dossiers: list[dict[str, Any]], exchange: Exchange, check: Check,
                          auditor_secret: str, owner: str, *, patience: float = 30.0) -> list[SignedOutcome]:
    """Play the scene over four ``dossiers`` (the first and the last owned by ``owner``, a personal
    id); returns each dossier's outcome for the report."""
    citizen, officer, revoked = (load_signer(pki, name) for name in ("citizen", "officer", "revoked"))
    first, second, forged, last = dossiers
    first, last = {**first, "MaDoiTuong": owner, "ChuHoSo": _cn(citizen)}, {**last, "MaDoiTuong": owner}
    due = datetime.strptime(forged["NgayHenTra"], "%Y%m%d%H%M%S") + timedelta(days=30)
    changed = {**forged, "NgayHenTra": due.strftime("%Y%m%d%H%M%S")}  # a month more to settle it

    async def push(what: str, signer: Signer, signed: dict[str, Any],
                   sent: dict[str, Any] | None = None) -> tuple[httpx.Response, SignedOutcome]:
        header = sign_detached(orjson.dumps(signed), signer)
        r = await exchange(f"DongBoHoSoMCKySo ({what})", token, client, SIGNED_PUSH,
                           signed if sent is None else sent, **{"X-JWS-Signature": header})
        problem = r.json() if r.status_code >= 400 else {}
        reason = str(problem.get("reason", ""))
        return r, SignedOutcome(signed["MaHoSo"], what, _cn(signer), r.status_code, reason)

    answers = await asyncio.gather(push("signed by the citizen", citizen, first),
                                   push("signed by a one-stop officer", officer, second),
                                   push("changed after signing", officer, forged, changed),
                                   push("signer's certificate revoked", revoked, last))
    (ok1, _), (ok2, _), (bad, o_bad), (rev, o_rev) = answers
    check("dossiers signed by a citizen and by a one-stop officer (detached JWS in X-JWS-Signature, x5c "
          "chain to the demo CA) are accepted (202)", ok1.status_code == ok2.status_code == 202,
          f"{ok1.status_code}, {ok2.status_code}")
    check("a dossier changed after it was signed is refused: 400 Client.SignatureInvalid (bad-signature)",
          _refused(bad, 400, "bad-signature"), f"{bad.status_code} {o_bad.reason or bad.text[:80]}")
    check("a dossier signed with a revoked certificate (CRL on file) is refused: 403 "
          "Client.SignatureInvalid (revoked)", _refused(rev, 403, "revoked"),
          f"{rev.status_code} {o_rev.reason or rev.text[:80]}")

    codes = {first["MaHoSo"], second["MaHoSo"]}
    started, held = time.monotonic(), set[str]()
    while time.monotonic() - started < patience:
        held = {item["MaHoSo"] for item in (await http.get(f"{portal_sim}/_sim/dossiers")).json()["items"]}
        if codes <= held:
            break
        await asyncio.sleep(0.1)
    never = {forged["MaHoSo"], last["MaHoSo"]} & held
    check("the signed dossiers reach the portal; the refused ones never do", codes <= held and not never,
          f"{len(codes & held)}/2 delivered, {len(never)} refused one(s) arrived")

    r = await http.post(f"{base}/oauth/token", auth=(AUDITOR, auditor_secret),
                        data={"grant_type": "client_credentials", "scope": "audit.subject"})
    r.raise_for_status()
    report = await http.post(f"{base}/audit/subject-report", json={"subject": owner},
                             headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    shown = sorted((a["signature"]["valid"], a["signature"]["reason"], a["signature"]["signer"])
                   for a in report.json().get("accesses", []) if a.get("signature"))
    expected = sorted([(True, "ok", citizen.subject), (False, "revoked", revoked.subject)])
    check("the citizen's access report shows each signed exchange's verdict and signer",
          report.status_code == 200 and shown == expected,
          f"{len(shown)} signed access(es): " + ", ".join(reason for _, reason, _ in shown))
    return [outcome for _, outcome in answers]


def _cn(signer: Signer) -> str:
    return str(signer.chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _refused(r: httpx.Response, status: int, reason: str) -> bool:
    if r.status_code != status:
        return False
    problem = r.json()
    return bool(problem.get("code") == "Client.SignatureInvalid" and problem.get("reason") == reason)


def signed_table(outcomes: list[SignedOutcome]) -> Table:
    table = Table(title=f"Signed dossiers ({SIGNED_PUSH.rsplit('/', 1)[-1]}: signatures required)")
    for col in ("dossier", "what", "signer", "status", "verdict"):
        table.add_column(col)
    for o in outcomes:
        style = "green" if o.status == 202 else "yellow"
        table.add_row(o.code, o.what, o.signer, f"[{style}]{o.status}[/{style}]", o.reason or "ok")
    return table
