"""CDS Hooks 2.0 wire models: the request envelope and the response cards.

Kept apart from the clinical model: these classes only say what travels on
the wire. Tolerance for small client deviations lives in validators here so
the rest of the code sees one clean shape.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HOOKS = ("patient-view", "order-select", "order-sign")


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow")
    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    def __repr__(self) -> str:  # never show the token, even in a traceback
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r})"

    __str__ = __repr__


class HookRequest(BaseModel):
    """The envelope every hook call carries (CDS Hooks 2.0 "HTTP Request")."""

    model_config = ConfigDict(extra="allow")
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _server_is_http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("fhirServer must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _patient_in_context(self) -> HookRequest:
        patient_id = self.context.get("patientId")
        if not isinstance(patient_id, str) or not patient_id.strip():
            raise ValueError("context.patientId is required and must be a non-empty string")
        if self.hook in ("order-select", "order-sign") and "draftOrders" not in self.context:
            raise ValueError(f"context.draftOrders is required for {self.hook}")
        return self

    @property
    def patient_id(self) -> str:
        return self.context["patientId"].strip()


# --- response -------------------------------------------------------------
# Plain dataclasses, not pydantic models: a card is built by our own code from validated knowledge, so
# what needs checking is only the spec's rules below (checked on construction); building and dumping
# pydantic models cost ~0.1-0.2 ms per hook call under load, most of the card step (python -m bench.stages).

INDICATORS = ("info", "warning", "critical")
MAX_SUMMARY = 139  # CDS Hooks: summary "<140 characters"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _present(**fields) -> dict:
    """The fields that have a value, in order: None, "" and empty lists or objects never go on the wire."""
    return {
        key: value for key, value in fields.items() if value is not None and value != "" and value != [] and value != {}
    }


@dataclass(frozen=True, slots=True)  # shared by many cards (cards.py makes each once)
class Coding:
    code: str
    system: str
    display: str

    def __post_init__(self) -> None:
        _require(
            type(self.code) is str and type(self.system) is str and type(self.display) is str,
            "a Coding's code, system and display are strings",
        )

    def wire(self) -> dict:
        return _present(code=self.code, system=self.system, display=self.display)


@dataclass(slots=True)
class Source:
    label: str
    url: str | None = None
    topic: Coding | None = None

    def __post_init__(self) -> None:
        _require(type(self.label) is str and self.label != "", "a card's source needs a label")

    def wire(self) -> dict:
        return _present(label=self.label, url=self.url, topic=self.topic.wire() if self.topic else None)


@dataclass(frozen=True, slots=True)  # shared by many cards (cards.py makes each once)
class Link:
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    appContext: str | None = None  # smart links only: handed to the app at launch

    def __post_init__(self) -> None:
        _require(type(self.label) is str and type(self.url) is str, "a link's label and url are strings")
        _require(self.type in ("absolute", "smart"), f"link type {self.type!r} is not absolute or smart")
        _require(self.appContext is None or self.type == "smart", "appContext is for smart links only")

    def wire(self) -> dict:
        return _present(label=self.label, url=self.url, type=self.type, appContext=self.appContext)


@dataclass(slots=True)
class Action:
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict | None = None
    resourceId: list[str] | None = None

    def __post_init__(self) -> None:
        _require(self.type in ("create", "update", "delete"), f"action type {self.type!r} is not in the spec")
        _require(type(self.description) is str, "an action's description is a string")

    def wire(self) -> dict:
        return _present(
            type=self.type,
            description=self.description,
            resource=prune(self.resource),
            resourceId=prune(self.resourceId),
        )


@dataclass(slots=True)
class Suggestion:
    label: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    isRecommended: bool | None = None
    actions: list[Action] | None = None

    def __post_init__(self) -> None:
        _require(type(self.label) is str and self.label != "", "a suggestion needs a label")

    def wire(self) -> dict:
        return _present(
            label=self.label,
            uuid=self.uuid,
            isRecommended=self.isRecommended,
            actions=[a.wire() for a in self.actions] if self.actions else None,
        )


@dataclass(slots=True)
class Card:
    summary: str
    indicator: Literal["info", "warning", "critical"]
    source: Source
    detail: str | None = None
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | tuple[Coding, ...] | None = None
    links: list[Link] | None = None
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))

    def __post_init__(self) -> None:
        """The spec's rules for a card, so no code path can put a card the EHR must reject on the wire."""
        _require(
            type(self.summary) is str and 0 < len(self.summary) <= MAX_SUMMARY,
            f"a card summary has 1 to {MAX_SUMMARY} characters",
        )
        _require(self.indicator in INDICATORS, f"card indicator {self.indicator!r} is not in the spec")
        _require(type(self.source) is Source, "a card needs a source")
        _require(
            self.selectionBehavior in (None, "at-most-one", "any"),
            f"selectionBehavior {self.selectionBehavior!r} is not in the spec",
        )
        if self.suggestions and not self.selectionBehavior:
            self.selectionBehavior = "at-most-one"
        if not self.suggestions:
            self.suggestions = None
            self.selectionBehavior = None
        if self.indicator == "info":
            self.overrideReasons = None

    def wire(self) -> dict:
        """The card as CDS Hooks JSON, in the spec's field order, nothing empty."""
        return _present(
            uuid=self.uuid,
            summary=self.summary,
            detail=self.detail,
            indicator=self.indicator,
            source=self.source.wire(),
            suggestions=[s.wire() for s in self.suggestions] if self.suggestions else None,
            selectionBehavior=self.selectionBehavior,
            overrideReasons=[c.wire() for c in self.overrideReasons] if self.overrideReasons else None,
            links=[link.wire() for link in self.links] if self.links else None,
        )


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and objects, recursively.

    The spec forbids them on the wire and some EHRs choke on them.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, (dict, list)):  # recurse into containers only; leaves are checked here
                item = prune(item)
            elif isinstance(item, str) and item == "":
                continue
            if item is not None:
                out[key] = item
        return out or None
    if isinstance(value, list):
        out_list = []
        for item in value:
            if isinstance(item, (dict, list)):
                item = prune(item)
            elif isinstance(item, str) and item == "":
                continue
            if item is not None:
                out_list.append(item)
        return out_list or None
    if isinstance(value, str) and value == "":
        return None
    return value


def cards_response(cards: list[Card]) -> dict:
    """The hook response body. ``cards`` is required even when empty."""
    return {"cards": [card.wire() for card in cards]}
