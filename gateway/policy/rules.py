"""Policy files: what a rule may say, and reading a folder of them with every problem located."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway import yamlfile
from gateway.policy.subjects import check_paths
from gateway.ratelimit import Quota, Rate

_PER_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Model):
    """A token bucket per client and service: ``rate`` calls per ``per``, ``burst`` at once."""

    rate: float = Field(gt=0)
    per: Literal["second", "minute", "hour", "day"] = "second"
    burst: int | None = Field(None, ge=1, description="calls allowed at once; the rate by default")

    def bucket(self) -> Rate:
        return Rate(per_second=self.rate / _PER_SECONDS[self.per],
                    burst=self.burst or max(1, math.ceil(self.rate)))


class QuotaLimit(_Model):
    """At most ``limit`` calls per calendar ``per`` (Asia/Ho_Chi_Minh), per client and service."""

    limit: int = Field(ge=1)
    per: Literal["minute", "hour", "day", "month"] = "day"

    def quota(self) -> Quota:
        return Quota(self.limit, self.per)


class Rule(_Model):
    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    services: list[str] = Field(min_length=1)
    operations: list[str] = []
    clients: list[str] = []
    groups: list[str] = []
    scopes: list[str] = []
    require_user_id: bool = False
    require_issue: bool = False
    rate_limit: RateLimit | None = None
    quota: QuotaLimit | None = None
    response_fields: list[str] | None = Field(
        None, description="dotted paths of the reply that may leave the gateway (lists are walked, '*' "
                          "matches any key); absent: the whole reply")
    subjects: list[str] = []
    # The audit log (gateway/audit): keep this exchange's bodies, encrypted, for so many days (no
    # retention_days: until purged by hand); name the acting official in citizens' access reports.
    keep_bodies: bool = False
    retention_days: int | None = Field(None, ge=1, le=36_500)
    disclose_official: bool = False
    # Verify the request's signature (docs/signatures.md); when set, wins over the service's.
    signatures: Literal["required", "optional"] | None = None
    source: str = Field("", exclude=True)  # file:line, for explanations

    @field_validator("response_fields", "subjects")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        return check_paths(value)

    @model_validator(mode="after")
    def _names_someone(self) -> Rule:
        if not self.clients and not self.groups:
            raise ValueError("a rule must name clients or groups (or both)")
        return self

    def matches(self, service: str, operation: str, client: str,
                patterns: tuple[str, ...] | None = None) -> bool:
        from fnmatch import fnmatchcase

        return (any(fnmatchcase(service, p) for p in self.services)
                and (not self.operations or operation in self.operations)
                and any(fnmatchcase(client, p) for p in (self.clients if patterns is None else patterns)))


class _File(_Model):
    groups: dict[str, list[str]] = {}
    rules: list[dict[str, Any]] = []


@dataclass
class Loaded:
    """What a folder of policy files holds, and every problem found in it."""

    rules: list[Rule] = field(default_factory=list)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problems: list[yamlfile.FileError] = field(default_factory=list)


def policy_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_folder(folder: Path) -> Loaded:
    """Read every ``*.yaml`` / ``*.yml`` file of a folder, in name order, collecting problems."""
    out = Loaded()
    if not folder.is_dir():
        out.problems.append(yamlfile.FileError(folder, None, "the policies folder does not exist"))
        return out
    parsed: list[tuple[Path, _File, dict[yamlfile.Location, int]]] = []
    group_source: dict[str, str] = {}
    for path in policy_files(folder):
        try:
            data, lines = yamlfile.load(path)
        except yamlfile.FileError as exc:
            out.problems.append(exc)
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            out.problems.append(yamlfile.FileError(path, 1, "a policy file must be a mapping with "
                                                   "'rules' (and optionally 'groups')"))
            continue
        try:
            file = _File.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                out.problems.append(yamlfile.FileError(path, yamlfile.line_of(lines, err["loc"]),
                                                       f"{where}: {err['msg']}"))
            continue
        for name, members in file.groups.items():
            line = yamlfile.line_of(lines, ("groups", name))
            if name in group_source:
                out.problems.append(yamlfile.FileError(path, line, f"group {name!r} is already defined "
                                                       f"at {group_source[name]}"))
                continue
            if not members:
                out.problems.append(yamlfile.FileError(path, line, f"group {name!r} has no members"))
            group_source[name] = f"{path}:{line}"
            out.groups[name] = tuple(members)
        parsed.append((path, file, lines))
    names: dict[str, str] = {}
    for path, file, lines in parsed:
        for i, raw in enumerate(file.rules):
            line = yamlfile.line_of(lines, ("rules", i))
            label = raw.get("name", i) if isinstance(raw, dict) else i
            try:
                rule = Rule.model_validate({**raw, "source": f"{path}:{line}"})
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ("rules", i, *err["loc"])
                    where = ".".join(str(p) for p in err["loc"]) or "(rule)"
                    out.problems.append(yamlfile.FileError(path, yamlfile.line_of(lines, loc),
                                                           f"rule {label!r}: {where}: {err['msg']}"))
                continue
            if rule.name in names:
                out.problems.append(yamlfile.FileError(path, line, f"rule name {rule.name!r} is already "
                                                       f"used at {names[rule.name]}"))
                continue
            unknown = [g for g in rule.groups if g not in out.groups]
            if unknown:
                j = rule.groups.index(unknown[0])
                out.problems.append(yamlfile.FileError(
                    path, yamlfile.line_of(lines, ("rules", i, "groups", j)),
                    f"rule {rule.name!r}: unknown group(s) {', '.join(unknown)} (define them under "
                    "'groups:' in a policy file)"))
                continue
            names[rule.name] = rule.source
            out.rules.append(rule)
    return out
