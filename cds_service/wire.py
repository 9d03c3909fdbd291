"""CDS Hooks 2.0 wire models: the request envelope and the response cards.

Kept apart from the clinical model: these classes only say what travels on
the wire. Tolerance for small client deviations lives in validators here so
the rest of the code sees one clean shape.
"""
from __future__ import annotations

import uuid as uuidlib
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
    def _patient_in_context(self) -> "HookRequest":
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

class Coding(BaseModel):
    model_config = ConfigDict(frozen=True)       # shared by many cards (cards.py makes each once)
    code: str
    system: str
    display: str


class Source(BaseModel):
    label: str
    url: str | None = None
    topic: Coding | None = None


class Link(BaseModel):
    model_config = ConfigDict(frozen=True)       # shared by many cards (cards.py makes each once)
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"


class Action(BaseModel):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict | None = None
    resourceId: list[str] | None = None


class Suggestion(BaseModel):
    label: str
    uuid: str = Field(default_factory=lambda: str(uuidlib.uuid4()))
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Card(BaseModel):
    uuid: str = Field(default_factory=lambda: str(uuidlib.uuid4()))
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _spec_rules(self) -> "Card":
        if self.suggestions and not self.selectionBehavior:
            self.selectionBehavior = "at-most-one"
        if not self.suggestions:
            self.suggestions = None
            self.selectionBehavior = None
        if self.indicator == "info":
            self.overrideReasons = None
        return self


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and objects, recursively.

    The spec forbids them on the wire and some EHRs choke on them.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, (dict, list)):        # recurse into containers only; leaves are checked here
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
    return {"cards": [prune(card.model_dump()) for card in cards]}
