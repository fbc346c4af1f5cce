"""Policies: which client may call which service, deny unless a rule allows.

Rules live in YAML files under the configured policies folder::

    rules:
      - name: hagiang-motcua-to-portal
        services: ["VN/GOV/000.00.00.G22/DVCQG/*"]   # glob patterns over service ids
        operations: []                               # optional: limit to these operations
        clients: ["VN/GOV/000.00.00.H22/MOTCUA"]     # client subsystem ids (globs allowed)
        scopes: ["exchange"]                          # every one of these must be in the token
        require_user_id: true                         # X-Road-UserId (the acting official)
        require_issue: true                           # X-Road-Issue (the purpose)
        subjects: ["SoDinhDanh"]                      # where data subjects' ids sit in the request

The first rule whose services, operations and clients match decides. If it finds the call lacking
(a scope, the official, the purpose) it refuses, naming itself; if no rule matches, the default
denies. Every decision names its rule, and that name goes into the audit record.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import yamlfile
from gateway.errors import Forbidden

DEFAULT_DENY = "default-deny"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    services: list[str] = Field(min_length=1)
    operations: list[str] = []
    clients: list[str] = Field(min_length=1)
    scopes: list[str] = []
    require_user_id: bool = False
    require_issue: bool = False
    subjects: list[str] = []
    source: str = Field("", exclude=True)  # file:line, for explanations

    def matches(self, service: str, operation: str, client: str) -> bool:
        return (any(fnmatch.fnmatchcase(service, p) for p in self.services)
                and (not self.operations or operation in self.operations)
                and any(fnmatch.fnmatchcase(client, p) for p in self.clients))


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[dict[str, Any]] = []


@dataclass(frozen=True, slots=True)
class Decision:
    rule: Rule

    @property
    def rule_name(self) -> str:
        return self.rule.name


@dataclass(frozen=True, slots=True)
class Request:
    client: str
    service: str
    operation: str
    scopes: frozenset[str]
    user_id: str | None
    issue: str | None


class Policy:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def load(cls, folder: Path) -> Policy:
        """Read every ``*.yaml`` / ``*.yml`` file of a folder, in name order."""
        rules: list[Rule] = []
        names: dict[str, str] = {}
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        if not folder.is_dir():
            raise yamlfile.FileError(folder, None, "the policies folder does not exist")
        for path in files:
            data, lines = yamlfile.load(path)
            if data is None:
                continue
            try:
                parsed = _File.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise yamlfile.FileError(path, yamlfile.line_of(lines, err["loc"]), err["msg"]) from None
            for i, raw in enumerate(parsed.rules):
                line = yamlfile.line_of(lines, ("rules", i))
                try:
                    rule = Rule.model_validate({**raw, "source": f"{path}:{line}"})
                except ValidationError as exc:
                    err = exc.errors()[0]
                    loc = ("rules", i, *err["loc"])
                    where = ".".join(str(p) for p in err["loc"])
                    raise yamlfile.FileError(path, yamlfile.line_of(lines, loc),
                                             f"rule {raw.get('name', i)!r}: {where}: {err['msg']}") \
                        from None
                if rule.name in names:
                    raise yamlfile.FileError(path, line, f"rule name {rule.name!r} is already used at "
                                             f"{names[rule.name]}")
                names[rule.name] = rule.source
                rules.append(rule)
        return cls(rules)

    def find(self, client: str, service: str, operation: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches(service, operation, client):
                return rule
        return None

    def decide(self, req: Request) -> Decision:
        """Allow, naming the rule, or raise Forbidden naming the rule that refused."""
        rule = self.find(req.client, req.service, req.operation)
        if rule is None:
            raise Forbidden(f"no policy rule allows client {req.client} to call {req.service}",
                            rule=DEFAULT_DENY)
        missing = [s for s in rule.scopes if s not in req.scopes]
        if missing:
            raise Forbidden(f"rule {rule.name!r} needs the scope(s) {' '.join(missing)} in the token",
                            rule=rule.name, scope=" ".join(rule.scopes))
        if rule.require_user_id and not req.user_id:
            raise Forbidden(f"rule {rule.name!r} needs the acting official in X-Road-UserId",
                            rule=rule.name)
        if rule.require_issue and not req.issue:
            raise Forbidden(f"rule {rule.name!r} needs the purpose (a dossier code or legal basis) "
                            "in X-Road-Issue", rule=rule.name)
        return Decision(rule)


def subject_ids(payload: Any, paths: list[str]) -> list[str]:
    """The data subjects' ids found at dotted paths of a JSON payload (lists are walked)."""
    found: list[str] = []
    for path in paths:
        nodes = [payload]
        for part in path.removeprefix("$.").split("."):
            nxt: list[Any] = []
            for node in nodes:
                if isinstance(node, list):
                    nxt.extend(n.get(part) for n in node if isinstance(n, dict))
                elif isinstance(node, dict):
                    nxt.append(node.get(part))
            nodes = [n for n in nxt if n is not None]
        for node in nodes:
            for value in node if isinstance(node, list) else [node]:
                if isinstance(value, str | int) and str(value).strip():
                    found.append(str(value).strip())
    return found
