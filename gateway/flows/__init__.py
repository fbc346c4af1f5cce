"""Joint procedures (liên thông) as tracked flows across agencies: their definitions.

A flow is declared in YAML (the flows folder, docs/flows.md): ordered steps, each a catalog service,
their requests built from the joint dossier and earlier steps' answers, conditions, deadlines,
retries and what a rejection does. ``load_flows`` reads and checks a folder of them.
"""

from gateway.flows.definition import Compensate, Compensation, Flow, Retry, Step, Title, parse_duration
from gateway.flows.loading import Flows, declares, load_flows
from gateway.flows.mapping import (
    MISSING,
    Condition,
    DefinitionError,
    EvaluationError,
    MissingSource,
    Scope,
    build_request,
    resolve,
)

__all__ = [
    "MISSING", "Compensate", "Compensation", "Condition", "DefinitionError", "EvaluationError", "Flow",
    "Flows", "MissingSource", "Retry", "Scope", "Step", "Title", "build_request", "declares",
    "load_flows", "parse_duration", "resolve",
]
