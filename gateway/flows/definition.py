"""What a flow definition may say: a joint procedure as ordered steps, each a catalog service.

One YAML file per flow in the flows folder (docs/flows.md). These models check each file on its own
(types, durations, the shape of sources and conditions); gateway/flows/loading.py checks them
against each other, the catalog and the joint dossier's JSON Schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)

from gateway.flows.mapping import Condition, Fields, parse_condition, parse_shape
from gateway.identifiers import ServiceId
from gateway.policy.subjects import check_paths

__all__ = ["Compensate", "Compensation", "Flow", "Notify", "Retry", "Step", "Title", "parse_duration"]

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(value: Any) -> float:
    """``2d``, ``36h``, ``1d12h``, ``90m``, ``30s`` or a number of seconds, as seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip() and _DURATION.sub("", value.strip()) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value.strip()))
    else:
        raise ValueError(f"{value!r} is not a duration such as 2d, 36h, 1d12h, 90m or 30s")
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration is longer than nothing")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _condition(value: Any) -> Condition:
    return value if isinstance(value, Condition) else parse_condition(value)


def _shape(value: Any) -> Fields:
    return value if isinstance(value, Fields) else parse_shape(value)


# Parsed by gateway/flows/mapping.py (a closed vocabulary), not by pydantic's type machinery.
When = Annotated[Condition, PlainValidator(_condition), PlainSerializer(repr)]
Input = Annotated[Fields, PlainValidator(_shape), PlainSerializer(repr)]

STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FLOW_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Title(_Model):
    vi: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Retry(_Model):
    """How a step rides out an agency's outage (503, refused or timed-out connections): so many
    attempts, waits doubling from ``backoff`` up to ``max_backoff``. A rejection is never retried."""

    attempts: int = Field(20, ge=1, le=10_000, description="attempts in all, the first included")
    backoff: Duration = Field(30.0, description="the wait before the second attempt")
    max_backoff: Duration = Field(1800.0, description="the longest wait between attempts")

    @model_validator(mode="after")
    def _ordered(self) -> Retry:
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff is shorter than backoff")
        return self


class Compensation(_Model):
    """How to undo a step that succeeded, when a later step is rejected and names it."""

    service: str = Field(description="the catalog service that undoes it (HuyDangKyThuongTru)")
    input: Input = Field(description="its request: sources as a step's input; it may read this "
                         "step's answer and those before it")

    @field_validator("service")
    @classmethod
    def _service_id(cls, value: str) -> str:
        return str(ServiceId.parse(value))


class Compensate(_Model):
    compensate: list[str] = Field(min_length=1, description="earlier steps to undo, in this order; "
                                  "each declares its compensation")


class Step(_Model):
    id: str = Field(description="unique in the flow; later steps read its answer as steps.<id>.<field>")
    service: str = Field(description="the catalog service the step calls (through the pipeline, as "
                         "the gateway's own client)")
    input: Input = Field(description="request field -> source: dossier.X.Y, steps.<id>.<field>, "
                         "{value: literal}, {from: path, optional: true}, nested mappings and lists")
    produces: list[str] = Field([], description="fields of the answer later steps may read")
    when: When | None = Field(None, description="the step runs only when this holds; otherwise it "
                              "is skipped")
    deadline: Duration | None = Field(None, description="how long the step may take before it is "
                                      "overdue (2d, 36h)")
    retry: Retry = Retry()
    on_reject: Literal["stop"] | Compensate = Field(
        "stop", description="when the agency rejects: stop (the flow ends rejected and the one-stop "
        "system is told) or {compensate: [earlier step ids]} to undo them first")
    compensation: Compensation | None = Field(None, description="how to undo this step, for a later "
                                              "step's on_reject")
    description: str = ""

    @field_validator("id")
    @classmethod
    def _step_id(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(f"{value!r}: a step id is lower case letters, digits and _ (khai_sinh)")
        return value

    @field_validator("service")
    @classmethod
    def _service_id(cls, value: str) -> str:
        return str(ServiceId.parse(value))

    @field_validator("produces")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        check_paths(value)
        if len(set(value)) != len(value):
            raise ValueError("a field is listed twice")
        return value

    def produced(self, parts: tuple[str, ...]) -> bool:
        """Whether a reference into this step's answer reads a field it produces (or inside one)."""
        return any(parts[: len(p)] == p for p in (tuple(f.split(".")) for f in self.produces))


StepEnd = Literal["done", "rejected", "failed"]
STEP_END: tuple[StepEnd, ...] = ("done", "rejected", "failed")
SERVICE_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Notify(_Model):
    """A message the flow sends as it goes, through the same pipeline and queue as its steps: the
    joint dossier to the national portal when it starts, the portal's progress as each step ends,
    the results back to the one-stop system that filed it when it ends (docs/flows.md)."""

    id: str = Field(description="unique among the flow's notifications")
    at: Literal["start", "step", "end"] = Field(description="start: once, when the flow begins; "
                                                "step: each time a step ends; end: when the flow ends")
    service: str | None = Field(None, description="the catalog service it goes to")
    client_service: str | None = Field(None, description="or a service code of the subsystem that "
                                       "filed the flow (the filing one-stop system's NhanKetQua…)")
    steps: list[str] | None = Field(None, description="at: step: only these steps (default: all)")
    states: list[StepEnd] = Field(
        list(STEP_END), description="at: step: the step states that send it (skipped steps never)")
    input: Input = Field(description="the message: sources as a step's input, plus flow.<field> and "
                         "event.<field>; an earlier step's answer only with optional: true")

    @field_validator("id")
    @classmethod
    def _notify_id(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(f"{value!r}: an id is lower case letters, digits and _ (tien_do)")
        return value

    @field_validator("service")
    @classmethod
    def _service_id(cls, value: str | None) -> str | None:
        return str(ServiceId.parse(value)) if value is not None else None

    @field_validator("client_service")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is not None and not SERVICE_CODE.match(value):
            raise ValueError(f"{value!r}: a service code such as NhanKetQuaLienThong")
        return value

    @model_validator(mode="after")
    def _target(self) -> Notify:
        if (self.service is None) == (self.client_service is None):
            raise ValueError("name exactly one of service or client_service")
        if self.at != "step" and self.steps is not None:
            raise ValueError("steps: goes with at: step only")
        return self

    def target(self, client: str) -> str:
        """The service it goes to, for a flow filed by ``client`` (a subsystem)."""
        return self.service if self.service is not None else f"{client}/{self.client_service}"


class Flow(_Model):
    name: str = Field(description="the flow's name; a catalog service marked flow: <name> starts it")
    title: Title
    description: str = ""
    dossier_schema: str = Field(description="path under schemas/ of the joint dossier's JSON Schema")
    code: str = Field("MaHoSo", description="dotted path of the dossier code in the joint dossier: "
                      "one flow per code")
    subjects: list[str] = Field([], description="dotted paths of personal ids in the joint dossier: "
                                "its data subjects, indexed (hashed) in every step's audit record")
    deadline: Duration = Field(description="the whole flow's deadline (2d)")
    legal_limit: Duration = Field(description="the legal time limit, for the KPI 'finished within "
                                  "the legal limit' (7d)")
    steps: list[Step] = Field(min_length=1)
    notify: list[Notify] = Field([], description="messages sent as the flow goes: to the portal, "
                                 "back to the one-stop system")
    source: str = Field("", exclude=True)  # file:line, for messages

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not FLOW_NAME.match(value):
            raise ValueError(f"{value!r}: a flow name is lower case letters, digits and - "
                             "(khai-sinh-3-trong-1)")
        return value

    @field_validator("code", "subjects")
    @classmethod
    def _paths(cls, value: str | list[str]) -> str | list[str]:
        check_paths([value] if isinstance(value, str) else value)
        return value

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def index(self, step_id: str) -> int:
        """The step's position, or -1."""
        return next((i for i, s in enumerate(self.steps) if s.id == step_id), -1)
