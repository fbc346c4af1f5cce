"""Policies: which client may call which service, deny unless a rule allows.

Rules live in YAML files under the configured policies folder::

    groups:                                           # named sets of clients (globs allowed)
      motcua-tinh: ["VN/GOV/000.00.00.H*/MOTCUA"]
    rules:
      - name: hagiang-motcua-to-portal
        services: ["VN/GOV/000.00.00.G22/DVCQG/*"]    # glob patterns over service ids
        operations: []                                # optional: limit to these operations
        clients: ["VN/GOV/000.00.00.H22/MOTCUA"]      # client subsystem ids (globs allowed) ...
        groups: [motcua-tinh]                         # ... and/or named groups
        scopes: ["exchange"]                          # every one of these must be in the token
        require_user_id: true                         # X-Road-UserId (the acting official)
        require_issue: true                           # X-Road-Issue (the purpose)
        rate_limit: {rate: 20, per: second, burst: 40}  # token bucket per client and service
        quota: {limit: 10000, per: day}               # calls per calendar period, ditto
        response_fields: [TonTai]                     # what of the reply may leave (the rest is removed)
        subjects: ["SoDinhDanh"]                      # where data subjects' ids sit in the request

The first rule whose services, operations and clients match decides. If it finds the call lacking
(a scope, the official, the purpose) it refuses, naming itself; if no rule matches, the default
denies. Every decision names its rule, and that name goes into the audit record, refusals for a
rate limit or quota included.
"""

from gateway.policy.engine import DEFAULT_DENY, Decision, Explanation, Kept, Policy, Request, check_folder
from gateway.policy.minimise import compile_fields, minimise
from gateway.policy.rules import QuotaLimit, RateLimit, Rule
from gateway.policy.subjects import subject_ids
from gateway.policy.watch import PolicyWatcher

__all__ = ["DEFAULT_DENY", "Decision", "Explanation", "Kept", "Policy", "PolicyWatcher", "QuotaLimit",
           "RateLimit", "Request", "Rule", "check_folder", "compile_fields", "minimise", "subject_ids"]
