"""The gateway's configuration: one YAML file with the instance, storage, keys and the catalog.

The catalog lists members (agencies), their subsystems (information systems), the services they
provide (which connector reaches them, where, with which schema) and the clients allowed to ask for
tokens. Invalid files fail at start with the file, the line and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway import yamlfile
from gateway.identifiers import IdentifierError, ServiceId, SubsystemId, split_id


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class TokenSettings(_Model):
    issuer: str = "http://127.0.0.1:8080"
    audience: str = "lienthong"
    lifetime: int = Field(300, ge=30, le=86400, description="access token lifetime, seconds")
    algorithm: Literal["EdDSA", "ES256"] = "EdDSA"


class Limits(_Model):
    max_body_bytes: int = Field(1_048_576, ge=1024)


class AuditSettings(_Model):
    batch_max: int = Field(512, ge=1, le=10_000)
    batch_wait_ms: float = Field(2.0, ge=0, le=1000)


class UpstreamSettings(_Model):
    transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp", description="HTTP client transport to upstreams; httpx's own is kept for comparison")
    max_connections: int = Field(256, ge=1, le=10_000)


class Subsystem(_Model):
    code: str
    name: str = ""


class Member(_Model):
    id: str
    name: str = ""
    subsystems: list[Subsystem] = []

    @field_validator("id")
    @classmethod
    def _member_id(cls, value: str) -> str:
        parts = split_id(value)
        if len(parts) != 3:
            raise ValueError(f"{value!r} is not a member id (INSTANCE/CLASS/CODE)")
        return "/".join(parts)


class Service(_Model):
    id: str
    connector: str
    upstream: str = Field(description="base URL of the upstream system")
    timeout: float = Field(10.0, gt=0, le=600)
    schema_: str | None = Field(None, alias="schema", description="path under schemas/")
    operation: str | None = Field(None, description="upstream operation; the service code by default")
    delivery: Literal["sync", "async"] = "sync"
    options: dict[str, Any] = {}
    description: str = ""

    @field_validator("id")
    @classmethod
    def _service_id(cls, value: str) -> str:
        return str(ServiceId.parse(value))

    @property
    def service_id(self) -> ServiceId:
        return ServiceId.parse(self.id)

    @property
    def operation_name(self) -> str:
        return self.operation or self.service_id.service_code


class Client(_Model):
    id: str
    name: str = ""
    secret_hash: str = Field(description="argon2 hash of the client secret")
    scopes: list[str] = ["exchange"]
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        return str(SubsystemId.parse(value))


class Simulator(_Model):
    port: int = Field(ge=0, le=65535)
    host: str = "127.0.0.1"


class Config(_Model):
    instance: str = "VN"
    listen: Listen = Listen()
    database: str = "sqlite:///lienthong.db"
    keys_dir: str = "keys"
    policies_dir: str = "policies"
    schemas_dir: str | None = Field(None, description="defaults to the bundled schemas/")
    token: TokenSettings = TokenSettings()
    limits: Limits = Limits()
    audit: AuditSettings = AuditSettings()
    upstream: UpstreamSettings = UpstreamSettings()
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
        clients: set[str] = set()
        for i, client in enumerate(self.clients):
            if client.id not in subsystems:
                raise _CatalogError(("clients", i, "id"),
                                    f"client {client.id} is not a subsystem declared in 'members'")
            if client.id in clients:
                raise _CatalogError(("clients", i, "id"), f"client {client.id} is listed twice")
            clients.add(client.id)
        return self

    def path(self, value: str) -> Path:
        """A path from the file, resolved against the file's folder."""
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def database_url(self) -> str:
        url = self.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix):]))
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

    def client(self, client_id: str) -> Client | None:
        for client in self.clients:
            if client.id == client_id:
                return client
        return None


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
