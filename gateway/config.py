"""The gateway's configuration: one YAML file with the instance, storage, keys and the catalog.

The catalog lists members (agencies), their subsystems (information systems), the services they
provide (which connector reaches them, where, with which schema) and the clients allowed to ask for
tokens. Invalid files fail at start with the file, the line and what is wrong.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway import yamlfile
from gateway.identifiers import IdentifierError, ServiceId, normalise_client, split_id

if TYPE_CHECKING:
    from gateway.agencies import Agencies


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    keep_alive: int = Field(75, ge=1, le=3600, description=(
        "seconds an idle client connection is kept open: longer than clients keep theirs in their "
        "pools (httpx 5 s, aiohttp 15 s), so that a client seldom sends on a connection the gateway "
        "is closing at that moment (nginx's default, 75 s)"))


class PublicSettings(_Model):
    """How the gateway is reached from outside (gateway/public.py)."""

    url: str | None = Field(None, description="the gateway's public base URL (https://lgsp.example."
                            "gov.vn): the address its WSDLs and redirects name; the listening "
                            "address by default. Never taken from a request's Host header")
    trusted_proxies: list[str] = Field([], description="addresses or networks (CIDR) of the TLS "
                                       "proxies in front, whose X-Forwarded-Proto is believed")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("public.url must start with http:// or https://")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value


class TrustedIssuer(_Model):
    """An outside authorization server whose access tokens the gateway accepts too (e.g. a
    national identity platform). Its keys come from its JWKS URL, fetched at start and refreshed."""

    issuer: str
    jwks_url: str
    audience: str | None = Field(None, description="the 'aud' its tokens must carry; token.audience "
                                 "by default")
    algorithms: list[Literal["EdDSA", "ES256", "ES384", "RS256", "PS256"]] = ["ES256", "RS256"]
    client_claim: str = Field("client_id", description="the claim naming the client subsystem")
    refresh: float = Field(300.0, ge=5, le=86400, description="seconds between JWKS refreshes")


class TokenSettings(_Model):
    issuer: str = "http://127.0.0.1:8080"
    audience: str = "lienthong"
    lifetime: int = Field(300, ge=30, le=86400, description="access token lifetime, seconds")
    algorithm: Literal["EdDSA", "ES256"] = Field(
        "EdDSA", description="algorithm of new signing keys; each key signs with its own")
    leeway: int = Field(30, ge=0, le=300, description="clock skew tolerated on exp/nbf, seconds")
    refresh: float = Field(1.0, gt=0, le=60, description=(
        "seconds between each worker's reloads of revoked tokens, disabled clients, signing keys "
        "and policies: how long a revocation may take to reach every worker"))
    trusted_issuers: list[TrustedIssuer] = []


class Limits(_Model):
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_document_bytes: int = Field(16 * 1_048_576, ge=1024, description=(
        "the largest edXML package or status message a document service takes (413 beyond); "
        "max_body_bytes bounds every request first, so raise both for large documents"))


class WitnessSettings(_Model):
    """A witness the gateway hands each new checkpoint to, and whose cosignatures it keeps
    (docs/audit.md#witnesses)."""

    name: str = Field(description="the witness's name, as in its verifier key and its cosignatures")
    url: str = Field(pattern=r"^https?://[^\s]+$", description=(
        "the witness's submission prefix: POST <url>/add-checkpoint (C2SP tlog-witness)"))
    vkey: str = Field(description="the witness's verifier key, <name>+<key id>+<base64(0x04 || key)>, "
                      "as 'lienthong witness init' and 'lienthong witness vkey' print it")

    @model_validator(mode="after")
    def _key_names_the_witness(self) -> WitnessSettings:
        from gateway.audit.checkpoint import KeyFormatError
        from gateway.witness.cosignature import CosignatureVerifier

        try:
            verifier = CosignatureVerifier.from_vkey(self.vkey)
        except KeyFormatError as exc:
            raise ValueError(f"vkey: {exc}") from None
        if verifier.name != self.name:
            raise ValueError(f"vkey is the key of {verifier.name!r}, not of {self.name!r}")
        return self


class AuditSettings(_Model):
    batch_max: int = Field(512, ge=1, le=10_000)
    batch_wait_ms: float = Field(2.0, ge=0, le=1000, description=(
        "group commit: how long a commit waits for more exchanges; it stays open while each such "
        "gap brings more, up to batch_wait_max_ms"))
    batch_wait_max_ms: float = Field(10.0, ge=0, le=1000, description=(
        "the longest an exchange's audit leaf waits for its commit under load"))
    origin: str | None = Field(None, description="the checkpoints' origin line (names this log); "
                               "lienthong.gov.vn/<instance>/audit by default")
    checkpoint_interval: float = Field(10.0, ge=0, le=86_400, description=(
        "seconds between signed checkpoints, made only when the log grew; 0: only on demand"))
    witness_file: str | None = Field("audit-witness.txt", description=(
        "every checkpoint is also appended here (a relative path is under state_dir): put it where "
        "the database's operators cannot write (another host's mount, say); empty: no witness file"))
    witnesses: list[WitnessSettings] = Field(default_factory=list, description=(
        "witnesses (lienthong witness serve) each new checkpoint is submitted to, off the exchanges' "
        "path; their cosignatures are kept in the database; none by default"))
    witness_timeout: float = Field(5.0, gt=0, le=300, description=(
        "seconds a submission to one witness may take before it counts as failed (retried later)"))
    require_cosignatures: int = Field(0, ge=0, le=100, description=(
        "'lienthong audit verify' fails unless the latest checkpoint holds this many valid "
        "cosignatures from the configured witnesses (--require-cosignatures overrides it)"))

    @field_validator("witnesses")
    @classmethod
    def _distinct_witnesses(cls, witnesses: list[WitnessSettings]) -> list[WitnessSettings]:
        names = [w.name for w in witnesses]
        if len(set(names)) != len(names):
            raise ValueError("two witnesses have the same name")
        return witnesses


class MigrationSettings(_Model):
    """How a starting gateway brings the database schema to the newest migration
    (docs/operations.md#migrations)."""

    at_start: Literal["auto", "wait"] = Field("auto", description=(
        "auto: migrate at start, under a lock so that replicas starting together migrate once; "
        "wait: never migrate, wait until the schema is at the newest migration (`lienthong "
        "migrate`, a Kubernetes Job, brings it there)"))
    wait_timeout: float = Field(300.0, ge=0, le=86_400, description=(
        "seconds a gateway with at_start: wait waits for the schema before it gives up, saying so; "
        "0: look once"))


SignatureMode = Literal["required", "optional"]


class SignatureSettings(_Model):
    """The trust store that signatures on dossiers are verified against (docs/signatures.md):
    read once at start, and only when a service or a policy rule asks for signatures."""

    anchors: str = Field("trust/anchors", description="folder of the trusted CA certificates (.pem, "
                         ".crt, .cer, .der); every certificate there is a trust anchor")
    revocation: str | None = Field(None, description="folder of CRLs (*.crl) and OCSP responses "
                                   "(*.ocsp); trust/revocation when that folder exists")
    intermediates: str | None = Field(None, description="folder of CA certificates offered to path "
                                      "building but not trusted; trust/intermediates when it exists")
    claimed_time: bool = Field(True, description="judge a signature without a trusted timestamp at "
                               "the time its signer claims (XAdES SigningTime, CMS signingTime, PDF /M, "
                               "JAdES sigT); false: at the moment of verification")
    revocation_mode: Literal["hard-fail", "require", "soft-fail"] = Field(
        "hard-fail", description="a certificate that names a CRL or OCSP location without current "
        "information on file is refused (hard-fail), every certificate needs it (require), or what "
        "is on file is checked and the rest passes (soft-fail)")


class PreviousSeal(_Model):
    """A retired seal key, published (not used) until what it sealed no longer needs checking."""

    certificate: str = Field(description="its certificate (PEM or DER)")
    kid: str | None = Field(None, description="the kid its seals name; the certificate's x5t#S256 "
                            "by default (seal.kid's default)")


class SealSettings(_Model):
    """The gateway seal (docs/signatures.md#gateway-seal): the gateway signs the answers it gives
    and the requests it forwards with its own key, and publishes the public keys as a JWKS."""

    enabled: bool = Field(False, description="seal at all; `lienthong init` writes true with a "
                          "generated key")
    folder: str = Field("seal", description="folder of <kid>.key and <kid>.pem pairs, under keys_dir: "
                        "the newest pair with its key seals, every .pem is published "
                        "(`lienthong seal rotate` adds one)")
    key: str | None = Field(None, description="instead of the folder: the sealing key (PEM, "
                            "unencrypted), e.g. one a CA certified; with certificate")
    certificate: str | None = Field(None, description="the key's certificate chain (PEM, leaf first)")
    kid: str | None = Field(None, description="the key id of key; its certificate's x5t#S256 by "
                            "default")
    previous: list[PreviousSeal] = Field([], description="earlier seal keys' certificates, still "
                                         "published so that what they sealed keeps verifying")
    algorithm: Literal["ES256", "RS256", "PS256"] = Field(
        "ES256", description="ES256 (P-256 key) or, for an RSA key of 2048 bits or more, RS256 or PS256")
    answers: bool = Field(True, description="seal the answers of the REST and SOAP faces")
    upstream: Literal["deliveries", "all", "none"] = Field(
        "deliveries", description="seal requests to upstreams: those the delivery workers send "
        "(store-and-forward, flows' steps), all of them (synchronous calls too), or none")
    xml: Literal["header", "enveloped"] = Field(
        "header", description="an XML answer (not a SOAP envelope) is sealed in the header like any "
        "body, or with an enveloped XML-DSig signature inside it")
    x5c: bool = Field(False, description="put the certificate chain in every seal's header too (the "
                      "JWKS has it; about 0.6 kB more per message for ES256)")

    @model_validator(mode="after")
    def _key_with_certificate(self) -> SealSettings:
        if (self.key is None) != (self.certificate is None):
            raise ValueError("seal.key and seal.certificate go together")
        return self


class UpstreamSettings(_Model):
    transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp", description="HTTP client transport to upstreams; httpx's own is kept for comparison")
    max_connections: int = Field(256, ge=1, le=10_000)


class TracingSettings(_Model):
    """OpenTelemetry traces of the exchanges, exported over OTLP/HTTP (docs/operations.md#traces).
    Off by default: then nothing of OpenTelemetry is loaded."""

    enabled: bool = Field(False, description="trace exchanges; needs pip install 'lienthong[tracing]'")
    endpoint: str | None = Field(None, pattern=r"^https?://[^\s]+$", description=(
        "the collector's OTLP/HTTP traces URL (http://collector:4318/v1/traces); by default the "
        "exporter's own (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else http://localhost:4318/v1/traces)"))
    service_name: str = Field("lienthong", min_length=1, description="the traces' service.name")
    sample_ratio: float = Field(1.0, ge=0, le=1, description=(
        "the share of exchanges traced when the caller sent no traceparent; a caller's sampling "
        "decision is followed"))
    headers: dict[str, str] = Field({}, description=(
        "headers sent with every export (an API key, say); values may be ${ENV} or file: references"))


class DeliverySettings(_Model):
    """Store-and-forward delivery of async services (see docs/delivery.md)."""

    workers: bool = Field(True, description="run delivery workers in every gateway process")
    concurrency: int = Field(32, ge=1, le=1000, description="deliveries in flight per upstream and "
                             "process")
    max_attempts: int = Field(10, ge=1, le=1000, description="then the delivery is a dead letter")
    backoff_base: float = Field(1.0, gt=0, le=3600, description="seconds before the first retry")
    backoff_max: float = Field(300.0, gt=0, le=86_400, description="longest wait between attempts")
    lease_margin: float = Field(15.0, gt=0, le=3600, description="seconds beyond the service's "
                                "timeout before a claimed delivery counts as abandoned (its worker "
                                "died) and is tried again")
    poll_interval: float = Field(0.5, gt=0, le=60, description="seconds between looks for due "
                                 "deliveries when idle")
    batch_max: int = Field(512, ge=1, le=10_000)
    batch_wait_ms: float = Field(2.0, ge=0, le=1000)
    breaker_failures: int = Field(5, ge=1, le=10_000, description="consecutive retryable failures "
                                  "that open an upstream's circuit")
    breaker_cooldown: float = Field(10.0, gt=0, le=3600, description="seconds the circuit stays "
                                    "open before one probe; doubles while probes fail")
    breaker_cooldown_max: float = Field(120.0, gt=0, le=86_400)
    transitions: Literal["refuse", "flag", "off"] = Field(
        "refuse", description="impossible dossier status changes (10 back to 4, say): refused with "
        "422, accepted and flagged, or not checked")
    retention_days: float | None = Field(None, gt=0, le=36_500, description=(
        "blank the body and the upstream's answer of deliveries delivered, cancelled or dead more "
        "than this many days ago (metadata and body_sha256 stay; audited); unset: keep them"))


class DossierTracking(_Model):
    """What an async service's requests carry, for ordering, idempotency and the KPIs."""

    message: Literal["dossier", "progress"]
    agency: Literal["client", "provider"] = Field(
        "client", description="whose KPIs the dossier counts for: the calling system's agency "
        "(a province pushing up) or the service's (the portal routing a dossier down)")


class ConsoleOidc(_Model):
    """An outside OpenID Connect provider for signing in to the console (docs/console.md)."""

    name: str = Field("OpenID Connect", description="what the sign-in button says")
    metadata_url: str = Field(description="the provider's .well-known/openid-configuration URL")
    client_id: str
    client_secret: str | None = None
    scope: str = "openid profile email"
    username_claim: str = Field("preferred_username", description="the claim naming the person")
    role_claim: str | None = Field("roles", description="the claim holding the person's roles")
    roles: dict[str, Literal["auditor", "operator", "admin"]] = Field(
        {}, description="claim value -> console role; a person with none of these (and no local "
        "account of the same name) is refused")


class ConsoleSettings(_Model):
    """The web console for auditors and operators (docs/console.md)."""

    enabled: bool = True
    session_hours: float = Field(8.0, gt=0, le=168, description="how long a sign-in lasts")
    secure_cookies: bool | None = Field(None, description="mark cookies Secure; by default when the "
                                        "request came over HTTPS")
    oidc: ConsoleOidc | None = None


class CliSettings(_Model):
    """Who may run the commands that change state (``lienthong clients add``, ``deliveries retry``,
    ``users role``, …): see docs/security.md#the-command-line."""

    operators: list[str] | None = Field(None, description=(
        "operating-system accounts, as a name or name@host, that may run the commands that change "
        "state; any other account is refused. Absent: whoever can read this file (and so the "
        "database credentials); [] refuses everyone. `lienthong init` writes the account that ran it"))


class Subsystem(_Model):
    code: str
    name: str = ""


class Routing(_Model):
    """Which dossiers routed down by agency this member receives, and with which of its services
    (gateway/routing.py, docs/delivery.md)."""

    agencies: list[str] = Field(min_length=1, description="agency parts of dossier codes (H22 takes "
                                "H22-..., H22.31-... and every unit below); the most specific wins")
    dossier: str | None = Field(None, description="SUBSYSTEM/SERVICECODE[/VERSION] of the member's "
                                "service that receives dossiers (an async service, dossier.message "
                                "dossier)")
    progress: str | None = Field(None, description="the same for progress updates (dossier.message "
                                 "progress)")

    @field_validator("agencies")
    @classmethod
    def _agency_codes(cls, value: list[str]) -> list[str]:
        from gateway.routing import check_agency

        return [check_agency(code) for code in value]


class Split(_Model):
    """Part of a former agency's work that went to one of several successors (a district's units
    split among communes): the agency codes of dossiers that now go to ``successor``."""

    agencies: list[str] = Field(min_length=1, description="agency parts of dossier codes (H22.31.20) "
                                "whose dossiers go to this successor; the most specific wins")
    successor: str = Field(description="the member id that took this part over")

    @field_validator("successor")
    @classmethod
    def _member_id(cls, value: str) -> str:
        return member_id(value)

    @field_validator("agencies")
    @classmethod
    def _agency_codes(cls, value: list[str]) -> list[str]:
        from gateway.routing import check_agency

        return [check_agency(code) for code in value]


class MemberDocuments(_Model):
    """Which edXML organs (OrganIds) this member's document-management system answers for, and how
    documents reach it (gateway/documents, docs/documents.md)."""

    organs: list[str] = Field([], description="OrganIds of the agencies whose documents this member's "
                              "system sends and receives (000.00.00.H60, 000.00.12.H60); the member's "
                              "own code when left out")
    subsystem: str = Field(description="the document-management system: the client that sends, "
                           "pulls, confirms and answers for these organs (a subsystem code, QLVB)")
    receive: str | None = Field(None, description="SUBSYSTEM/SERVICECODE[/VERSION] of the member's "
                                "async service the gateway pushes packages and status messages to; "
                                "absent: the system pulls them (docs/documents.md)")


class Member(_Model):
    id: str
    name: str = ""
    subsystems: list[Subsystem] = []
    documents: MemberDocuments | None = Field(None, description="edXML documents: the organs this "
                                              "member's document-management system answers for")
    routing: Routing | None = Field(None, description="dossiers and progress routed down to this "
                                    "member by the agency their dossier code names")
    valid_from: date | None = Field(None, description="the first day the agency exists (Vietnamese "
                                    "time); since ever when left out")
    valid_until: date | None = Field(None, description="the last day the agency exists; after it the "
                                     "agency is former: what is addressed to it goes to its successor "
                                     "and its clients are refused (gateway/agencies.py)")
    successor: str | None = Field(None, description="the member id that took the agency's work over "
                                  "after valid_until (several former agencies may name one successor)")
    split: list[Split] = Field([], description="instead of one successor: which agency codes of the "
                               "agency's dossiers went to which successor; a dossier whose code none "
                               "names is refused, naming them")
    carry_policies: bool = Field(False, description="after valid_until, policy rules written for this "
                                 "agency's services also allow the same calls to its successor's "
                                 "same-named services; off by default, so a merger widens no access")

    @field_validator("id", "successor")
    @classmethod
    def _member_id(cls, value: str | None) -> str | None:
        return None if value is None else member_id(value)

    @model_validator(mode="after")
    def _succession(self) -> Member:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError(f"member {self.id}: valid_until {self.valid_until} is before valid_from "
                             f"{self.valid_from}")
        if self.successor and self.split:
            raise ValueError(f"member {self.id}: name one successor or a split, not both")
        if (self.successor or self.split) and self.valid_until is None:
            raise ValueError(f"member {self.id}: a successor takes over after valid_until: set the "
                             "agency's last day")
        return self


def member_id(value: str) -> str:
    """``INSTANCE/CLASS/CODE`` (the colon form accepted); ValueError otherwise."""
    parts = split_id(value)
    if len(parts) != 3:
        raise ValueError(f"{value!r} is not a member id (INSTANCE/CLASS/CODE)")
    return "/".join(parts)


@functools.lru_cache(maxsize=1024)
def _service_id(text: str) -> ServiceId:
    # A service's id is read on every exchange (its operation's name); parsed once per id.
    return ServiceId.parse(text)


class Service(_Model):
    id: str
    connector: str = Field("", description="required, except for a routing service")
    upstream: str = Field("", description="base URL of the upstream system; required, except for a "
                          "routing service")
    timeout: float = Field(10.0, gt=0, le=600)
    schema_: str | None = Field(None, alias="schema", description="path under schemas/")
    operation: str | None = Field(None, description="upstream operation; the service code by default")
    delivery: Literal["sync", "async"] = "sync"
    dossier: DossierTracking | None = Field(None, description="the requests carry dossier messages: "
                                            "ordered and deduplicated per MaHoSo, tracked for KPIs")
    extra_path: str | None = Field(None, description="the path a client may add after the service's "
                                   "code: none by default; '/' for any, '/items' for /items and "
                                   "below (gateway/paths.py)")
    subjects: list[str] = Field([], description=(
        "dotted paths where this service's requests name data subjects (personal ids): indexed, as "
        "keyed hashes, in the audit record of every exchange with it, refused ones included, so that "
        "a citizen's access report shows them; the deciding rule's subjects add to these"))
    options: dict[str, Any] = {}
    description: str = ""
    signatures: SignatureMode | None = Field(None, description=(
        "verify the signature on each request against the trust store (section 'signatures'): "
        "required refuses a request without a valid one before any upstream call, optional keeps "
        "the verdict and lets it through; absent: not checked. A policy rule's setting wins"))
    route: bool = Field(False, description="a routing service: each request is stored for the "
                        "member whose routing.agencies name the agency in its dossier code, and "
                        "delivered by that member's service for the message (dossier.message); it "
                        "has no connector or upstream of its own (gateway/routing.py)")
    flow: str | None = Field(None, description="the service starts the named joint procedure (a "
                             "flow in flows_dir, docs/flows.md): its request is the joint dossier; "
                             "like a routing service it has no connector or upstream of its own")
    documents: bool = Field(False, description="a document service: edXML packages and status "
                            "messages sent to it are stored and delivered to their recipients' "
                            "members (members[].documents), which may also pull them; no connector "
                            "or upstream of its own (docs/documents.md)")

    @model_validator(mode="before")
    @classmethod
    def _documents_paths(cls, data: Any) -> Any:
        """A document service takes paths after its code (pending, one message, confirm)."""
        if isinstance(data, dict) and data.get("documents") is True and "extra_path" not in data:
            return {**data, "extra_path": "/"}
        return data

    @model_validator(mode="after")
    def _reaches_somewhere(self) -> Service:
        if self.documents:
            if self.route or self.flow is not None or self.connector or self.upstream \
                    or self.delivery != "sync" or self.dossier is not None:
                raise ValueError(f"service {self.id} is a document service (documents: true): it has "
                                 "no connector, upstream, route, flow, dossier or async delivery of its "
                                 "own; the recipients' services have")
            if self.extra_path != "/":
                raise ValueError(f"service {self.id} is a document service: its extra_path is '/'")
        elif self.flow is not None:
            if self.route or self.connector or self.upstream:
                raise ValueError(f"service {self.id} starts flow {self.flow}: it has no connector, "
                                 "upstream or route of its own, the flow's steps call the agencies")
        elif self.route:
            if self.connector or self.upstream:
                raise ValueError(f"service {self.id} routes (route: true): it has no connector or "
                                 "upstream of its own, the receiving member's service has")
            if self.delivery != "async" or self.dossier is None:
                raise ValueError(f"service {self.id} routes (route: true): it needs delivery: async "
                                 "and dossier: {message: dossier|progress}")
        elif not self.connector or not self.upstream:
            raise ValueError(f"service {self.id} needs a connector and an upstream")
        return self

    @field_validator("subjects")
    @classmethod
    def _subject_paths(cls, value: list[str]) -> list[str]:
        from gateway.policy.subjects import check_paths

        return check_paths(value) or []

    @field_validator("extra_path")
    @classmethod
    def _extra_path(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith("/"):
                raise ValueError("extra_path starts with '/': '/' for any path, '/items' for a prefix")
            from gateway.errors import GatewayError
            from gateway.paths import split_raw

            try:
                split_raw(value[1:], "extra_path")
            except GatewayError as err:
                raise ValueError(err.detail) from None
        return value

    @field_validator("id")
    @classmethod
    def _service_id(cls, value: str) -> str:
        return str(ServiceId.parse(value))

    @property
    def service_id(self) -> ServiceId:
        return _service_id(self.id)

    @property
    def operation_name(self) -> str:
        return self.operation or self.service_id.service_code


class Client(_Model):
    id: str
    name: str = ""
    secret_hash: str | None = Field(None, description="argon2 hash of the client secret "
                                    "(client_secret_basic)")
    jwks: dict[str, Any] | None = Field(None, description="the client's public keys (private_key_jwt)")
    scopes: list[str] = ["exchange"]
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        return normalise_client(value)  # a subsystem, or a member acting as itself (X-Road allows both)

    @field_validator("jwks")
    @classmethod
    def _public_jwks(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from gateway.oauth.jwks import public_jwks

            public_jwks(value)  # raises ValueError naming the problem
        return value

    @model_validator(mode="after")
    def _has_a_credential(self) -> Client:
        if not self.secret_hash and not self.jwks:
            raise ValueError(f"client {self.id} needs secret_hash or jwks (or both)")
        return self


class Simulator(_Model):
    port: int = Field(ge=0, le=65535)
    host: str = "127.0.0.1"


class Config(_Model):
    instance: str = "VN"
    listen: Listen = Listen()
    public: PublicSettings = PublicSettings()
    database: str = Field("sqlite:///lienthong.db", description=(
        "SQLAlchemy URL; a relative SQLite path is under state_dir"))
    state_dir: str | None = Field(None, description=(
        "the folder for what the gateway writes while it runs (a relative SQLite database, the audit "
        "witness file, the console's session key when keys_dir has none); the configuration file's "
        "folder by default. Set it when the configuration is mounted read-only"))
    migrations: MigrationSettings = MigrationSettings()
    node: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description=(
        "this gateway node's name, in its delivery workers' leases (node:pid) when several nodes "
        "share one database; the host's name by default"))
    keys_dir: str = "keys"
    policies_dir: str = "policies"
    flows_dir: str = Field("flows", description="*.yaml joint procedure definitions (docs/flows.md)")
    flows_client: str = Field("VN/GOV/000.00.00.G22/LIENTHONG", description=(
        "the gateway's own client, as which a flow's steps call the agencies (a subsystem the "
        "catalog declares; policies allow it the steps' services)"))
    schemas_dir: str | None = Field(None, description="defaults to the bundled schemas/")
    token: TokenSettings = TokenSettings()
    limits: Limits = Limits()
    audit: AuditSettings = AuditSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    delivery: DeliverySettings = DeliverySettings()
    console: ConsoleSettings = ConsoleSettings()
    cli: CliSettings = CliSettings()
    signatures: SignatureSettings = SignatureSettings()
    seal: SealSettings = SealSettings()
    tracing: TracingSettings = TracingSettings()
    redis: str | None = Field(None, description="redis://host:port/db: rate-limit counters and the "
                              "client-assertion replay cache, shared by every worker and node")
    members: list[Member] = []
    services: list[Service] = []
    clients: list[Client] = []
    simulators: dict[str, Simulator] = {}
    # Where the file was read from: relative paths above are relative to its folder.
    base_dir: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _catalog_is_consistent(self) -> Config:
        subsystems = {f"{m.id}/{s.code}" for m in self.members for s in m.subsystems}
        seen: set[str] = set()
        for i, service in enumerate(self.services):
            owner = str(service.service_id.subsystem_id)
            if owner not in subsystems:
                raise _CatalogError(("services", i, "id"),
                                    f"service {service.id} belongs to subsystem {owner}, "
                                    "which no member in 'members' declares")
            if service.id in seen:
                raise _CatalogError(("services", i, "id"), f"service {service.id} is listed twice")
            seen.add(service.id)
            _check_options(i, service)
        clients: set[str] = set()
        declared = subsystems | {m.id for m in self.members}
        for i, client in enumerate(self.clients):
            if client.id not in declared:
                raise _CatalogError(("clients", i, "id"), f"client {client.id} is not a member or a "
                                    "subsystem declared in 'members'")
            if client.id in clients:
                raise _CatalogError(("clients", i, "id"), f"client {client.id} is listed twice")
            clients.add(client.id)
        from gateway.agencies import succession_problem
        from gateway.documents.catalog import documents_problem
        from gateway.routing import catalog_problem

        problem = succession_problem(self) or catalog_problem(self) or documents_problem(self)
        if problem is not None:
            raise _CatalogError(*problem)
        return self

    def path(self, value: str) -> Path:
        """A path from the file, resolved against the file's folder."""
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def state_folder(self) -> Path:
        """Where the gateway writes at run time: state_dir, or the file's folder."""
        return self.path(self.state_dir) if self.state_dir else self.base_dir.resolve()

    def state_path(self, value: str) -> Path:
        """A path the gateway writes at run time, resolved against ``state_folder``."""
        p = Path(value)
        return p if p.is_absolute() else (self.state_folder / p).resolve()

    @property
    def database_url(self) -> str:
        url = self.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.state_path(url[len(prefix):]))
        return url

    def service(self, service_id: str) -> Service | None:
        return self.services_by_id.get(service_id)

    @property
    def services_by_id(self) -> dict[str, Service]:
        cache = self.__dict__.get("_services_by_id")
        if cache is None:
            cache = {s.id: s for s in self.services}
            self.__dict__["_services_by_id"] = cache
        return cache

    def declares(self, client_id: str) -> bool:
        """Whether ``members`` declares this member or subsystem: X-Road's registered client."""
        declared = self.__dict__.get("_declared")
        if declared is None:
            declared = frozenset({m.id for m in self.members}
                                 | {f"{m.id}/{s.code}" for m in self.members for s in m.subsystems})
            self.__dict__["_declared"] = declared
        return client_id in declared

    @property
    def agencies(self) -> Agencies:
        """The members' validity periods and successors (gateway/agencies.py)."""
        cache = self.__dict__.get("_agencies")
        if cache is None:
            from gateway.agencies import Agencies

            cache = self.__dict__["_agencies"] = Agencies(self.members)
        return cache

    def client(self, client_id: str) -> Client | None:
        for client in self.clients:
            if client.id == client_id:
                return client
        return None


def _check_options(i: int, service: Service) -> None:
    """A service's options as its connector's ``Options`` model takes them (gateway/plugins.py):
    an unknown key or a wrong type is refused at its line. A connector that is not installed, or
    declares no model, is not checked here (``lienthong serve`` refuses the first)."""
    if not service.connector:
        return
    from gateway import plugins

    try:
        model = plugins.options_model(service.connector)
    except (plugins.PluginNotFound, ImportError):
        return
    problem = None if model is None else plugins.options_problem(model, service.options, service.connector)
    if problem is not None:
        where, message = problem
        raise _CatalogError(("services", i, "options", *where), f"service {service.id}: {message}")


class _CatalogError(ValueError):
    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def load_config(path: Path | str) -> Config:
    """Read and validate a configuration file; raise FileError naming the line on any problem."""
    path = Path(path).resolve()
    data, lines = yamlfile.load(path)
    if not isinstance(data, dict):
        raise yamlfile.FileError(path, 1, "the configuration must be a mapping of settings")
    from gateway.secretref import resolve

    data = resolve(data, lines, path)  # ${ENV} and file: values (docs/operations.md#secrets)
    try:
        return Config.model_validate({**data, "base_dir": path.parent})
    except ValidationError as exc:
        errors = exc.errors()
        ctx_error = (errors[0].get("ctx") or {}).get("error")
        if isinstance(ctx_error, _CatalogError):
            raise yamlfile.FileError(path, yamlfile.line_of(lines, ctx_error.loc),
                                     ctx_error.message) from None
        problems = []
        for err in errors[:5]:
            loc = tuple(p for p in err["loc"] if p != "schema_")
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append((yamlfile.line_of(lines, loc), f"{where}: {err['msg']}"))
        message = problems[0][1] + "".join(f"\n  line {line}: {text}" for line, text in problems[1:])
        if len(errors) > 5:
            message += f"\n  … and {len(errors) - 5} more"
        raise yamlfile.FileError(path, problems[0][0], message) from None
    except IdentifierError as exc:  # pragma: no cover - pydantic wraps these as ValidationError
        raise yamlfile.FileError(path, None, str(exc)) from None
