"""Deciding one call: the first rule whose services, operations and clients match decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import orjson

from gateway import yamlfile
from gateway.errors import AccessDenied
from gateway.policy.minimise import Tree, compile_fields
from gateway.policy.rules import Rule, load_folder
from gateway.ratelimit import Quota, Rate

DEFAULT_DENY = "default-deny"
_CACHE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Request:
    client: str
    service: str
    operation: str
    scopes: frozenset[str]
    user_id: str | None
    issue: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """An allowing rule, with what it asks of the rest of the pipeline."""

    rule: Rule
    rate: Rate | None = None
    quota: Quota | None = None
    fields: Tree | None = None  # compiled response_fields; None: the whole reply may leave

    @classmethod
    def of(cls, rule: Rule) -> Decision:
        return cls(rule, rule.rate_limit.bucket() if rule.rate_limit else None,
                   rule.quota.quota() if rule.quota else None,
                   compile_fields(rule.response_fields) if rule.response_fields is not None else None)

    @property
    def rule_name(self) -> str:
        return self.rule.name

    @property
    def limited(self) -> bool:
        return self.rate is not None or self.quota is not None

    def limit_key(self, client: str, service: str) -> str:
        """Counters are kept per rule, client and service."""
        return f"{self.rule.name}|{client}|{service}"


@dataclass(frozen=True, slots=True)
class Kept:
    """The response fields a decision let leave (None: all), kept with a stored message so that it
    is answered as it was accepted (gateway/delivery), whatever the rule says by then."""

    fields: tuple[str, ...] | None

    def dumps(self) -> str:
        return orjson.dumps({"fields": None if self.fields is None else list(self.fields)}).decode()

    @classmethod
    def loads(cls, text: str | None) -> Kept | None:
        if text is None:
            return None
        fields = orjson.loads(text).get("fields")
        return cls(None if fields is None else tuple(fields))


@dataclass(frozen=True, slots=True)
class RuleCheck:
    rule: Rule
    matched: bool
    why: str


@dataclass
class Explanation:
    """Which rule would decide a call, and why: what ``lienthong policy explain`` prints."""

    request: Request
    checks: list[RuleCheck] = field(default_factory=list)
    deciding: Rule | None = None
    allowed: bool = False
    reason: str = ""

    def lines(self) -> list[str]:
        req = self.request
        out = [f"client {req.client} -> service {req.service} (operation {req.operation})"]
        for check in self.checks:
            mark = "MATCH" if check.matched else "skip "
            out.append(f"  {mark} {check.rule.name} ({check.rule.source}): {check.why}")
        if self.deciding is None:
            out.append(f"decided by {DEFAULT_DENY}: no rule matches, so the call is refused")
            return out
        rule = self.deciding
        out.append(f"decided by {rule.name} ({rule.source}): {'ALLOWED' if self.allowed else 'REFUSED'}"
                   f" - {self.reason}")
        if rule.description:
            out.append(f"  rule says: {rule.description.strip()}")
        if rule.rate_limit:
            rl = rule.rate_limit
            out.append(f"  rate limit: {rl.rate:g} per {rl.per}, burst {rl.bucket().burst} "
                       "(per client and service)")
        if rule.quota:
            out.append(f"  quota: {rule.quota.limit} per {rule.quota.per} (per client and service)")
        if rule.response_fields is not None:
            out.append(f"  response fields that may leave: {', '.join(rule.response_fields) or '(none)'}")
        if rule.subjects:
            out.append(f"  data subjects indexed from: {', '.join(rule.subjects)}")
        if rule.keep_bodies:
            kept = f"{rule.retention_days} days" if rule.retention_days else "until purged"
            out.append(f"  bodies kept in the audit store, encrypted, {kept}")
        if rule.disclose_official:
            out.append("  the acting official is named in citizens' access reports")
        if rule.signatures:
            out.append(f"  request signatures: {rule.signatures} (over the service's own setting)")
        return out


class Policy:
    """Rules in order, deny by default. Immutable: a reload builds a new one."""

    def __init__(self, rules: list[Rule], groups: dict[str, tuple[str, ...]] | None = None) -> None:
        self.rules = rules
        self.groups = dict(groups or {})
        self._patterns = [tuple(r.clients) + tuple(p for g in r.groups for p in self.groups.get(g, ()))
                          for r in rules]
        self._decisions = [Decision.of(r) for r in rules]
        self._cache: dict[tuple[str, str, str], int] = {}

    @classmethod
    def load(cls, folder: Path) -> Policy:
        """Read every ``*.yaml`` / ``*.yml`` file of a folder, in name order; raise the first
        problem (``FileError`` naming file and line)."""
        loaded = load_folder(folder)
        if loaded.problems:
            raise loaded.problems[0]
        return cls(loaded.rules, loaded.groups)

    def clients_of(self, rule: Rule) -> tuple[str, ...]:
        """The client patterns a rule admits, its groups expanded."""
        return self._patterns[self.rules.index(rule)]

    def _index(self, client: str, service: str, operation: str) -> int:
        key = (client, service, operation)
        found = self._cache.get(key)
        if found is None:
            found = next((i for i, rule in enumerate(self.rules)
                          if rule.matches(service, operation, client, self._patterns[i])), -1)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = found
        return found

    def rule(self, name: str) -> Rule | None:
        """The rule of that name, if the policy still has it (a delivery's, a kept body's)."""
        return next((r for r in self.rules if r.name == name), None)

    def find(self, client: str, service: str, operation: str) -> Rule | None:
        i = self._index(client, service, operation)
        return self.rules[i] if i >= 0 else None

    def decide(self, req: Request) -> Decision:
        """Allow, naming the rule, or raise Forbidden naming the rule that refused."""
        i = self._index(req.client, req.service, req.operation)
        if i < 0:
            raise AccessDenied(f"no policy rule allows client {req.client} to call {req.service}",
                               rule=DEFAULT_DENY)
        decision = self._decisions[i]
        problem = _lacking(decision.rule, req)
        if problem is not None:
            detail, scope = problem
            raise AccessDenied(detail, rule=decision.rule.name, scope=scope)
        return decision

    def explain(self, req: Request, *, check_scopes: bool = True) -> Explanation:
        out = Explanation(req)
        for i, rule in enumerate(self.rules):
            why = _mismatch(rule, req, self._patterns[i])
            out.checks.append(RuleCheck(rule, why is None, why or "matches service, operation and client"))
            if why is None:
                out.deciding = rule
                break
        if out.deciding is None:
            out.reason = "no rule matches"
            return out
        problem = _lacking(out.deciding, req if check_scopes else _with_scopes(req, out.deciding))
        out.allowed = problem is None
        out.reason = problem[0] if problem else "every requirement of the rule is met"
        return out


def _with_scopes(req: Request, rule: Rule) -> Request:
    return Request(req.client, req.service, req.operation, req.scopes | set(rule.scopes), req.user_id,
                   req.issue)


def _lacking(rule: Rule, req: Request) -> tuple[str, str | None] | None:
    """What the call lacks for the rule (the detail, and the scope to name in WWW-Authenticate)."""
    missing = [s for s in rule.scopes if s not in req.scopes]
    if missing:
        return (f"rule {rule.name!r} needs the scope(s) {' '.join(missing)} in the token",
                " ".join(rule.scopes))
    if rule.require_user_id and not req.user_id:
        return f"rule {rule.name!r} needs the acting official in X-Road-UserId", None
    if rule.require_issue and not req.issue:
        return (f"rule {rule.name!r} needs the purpose (a dossier code or legal basis) in X-Road-Issue",
                None)
    return None


def _mismatch(rule: Rule, req: Request, patterns: tuple[str, ...]) -> str | None:
    if not any(fnmatchcase(req.service, p) for p in rule.services):
        return f"service not in {', '.join(rule.services)}"
    if rule.operations and req.operation not in rule.operations:
        return f"operation {req.operation} not in {', '.join(rule.operations)}"
    if not any(fnmatchcase(req.client, p) for p in patterns):
        groups = f" (groups {', '.join(rule.groups)})" if rule.groups else ""
        return f"client not in {', '.join(patterns)}{groups}"
    return None


def check_folder(folder: Path) -> tuple[Policy | None, list[yamlfile.FileError]]:
    """Every problem of a policy folder, and the policy when there is none."""
    loaded = load_folder(folder)
    if loaded.problems:
        return None, loaded.problems
    return Policy(loaded.rules, loaded.groups), []
