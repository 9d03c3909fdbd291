"""``POST /cds-services/{id}/feedback`` (CDS Hooks 2.0 "Feedback").

The EHR tells us what the clinician did with each card: accepted (with the
suggestions taken) or overridden (with a reason). Validated, stored, joined to
the rule through the card uuid recorded when the card was issued.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from datetime import UTC, datetime
from typing import Literal

from flask import Blueprint, Response, current_app
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.exc import SQLAlchemyError

from cds_service.errors import CdsError
from cds_service.store import RETRY_AFTER_S, FeedbackRow, StoreUnavailable
from cds_service.web.api import read_json_body

log = logging.getLogger(__name__)
bp = Blueprint("feedback", __name__)
MAX_ITEMS = 100


def _uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValueError("must be a UUID") from None


class FeedbackCoding(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(min_length=1, max_length=200)
    system: str | None = Field(default=None, max_length=300)
    display: str | None = Field(default=None, max_length=300)


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: FeedbackCoding | None = None
    userComment: str | None = Field(default=None, max_length=4000)


class AcceptedSuggestion(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str

    @field_validator("id")
    @classmethod
    def _id_is_uuid(cls, value: str) -> str:
        return _uuid(value)


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    card: str
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=50)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @field_validator("card")
    @classmethod
    def _card_is_uuid(cls, value: str) -> str:
        return _uuid(value)

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackItem:
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("overrideReason is only allowed when the outcome is 'overridden'")
        if self.outcome == "overridden" and self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is only allowed when the outcome is 'accepted'")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=MAX_ITEMS)


def parse_feedback(body) -> FeedbackRequest:
    if not isinstance(body, dict):
        raise CdsError(400, "the feedback body must be a JSON object with a 'feedback' array")
    try:
        return FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise CdsError(
            400,
            f"invalid feedback: {where + ': ' if where else ''}{first.get('msg', 'invalid')}",
            expression=[where] if where else None,
        ) from None


def to_rows(request: FeedbackRequest) -> list[FeedbackRow]:
    rows = []
    for item in request.feedback:
        reason = item.overrideReason.reason if item.overrideReason else None
        stamp = item.outcomeTimestamp
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        rows.append(
            FeedbackRow(
                card_uuid=item.card,
                outcome=item.outcome,
                outcome_timestamp=stamp.astimezone(UTC),
                accepted_suggestions=[s.id for s in item.acceptedSuggestions or []] or None,
                override_system=reason.system if reason else None,
                override_code=reason.code if reason else None,
                override_display=reason.display if reason else None,
                user_comment=item.overrideReason.userComment if item.overrideReason else None,
            )
        )
    return rows


@bp.post("/cds-services/<service_id>/feedback")
def post_feedback(service_id: str):
    engine = current_app.extensions["jak_engine"]
    if service_id not in engine.services:
        raise CdsError(404, f"no CDS service with id {service_id!r}; see GET /cds-services", code="not-found")
    request = parse_feedback(read_json_body())
    store = current_app.extensions.get("jak_store")
    if store is None:
        raise CdsError(503, "feedback storage is not configured", code="transient")
    try:
        store.record_feedback(service_id, to_rows(request))
    except (StoreUnavailable, SQLAlchemyError) as exc:
        # 200 only once the rows are committed: the EHR keeps (or resends) what we could not store
        log.error(
            "could not store feedback for service %s: %s",
            service_id,
            exc if isinstance(exc, StoreUnavailable) else type(exc).__name__,
        )
        raise CdsError(
            503,
            "the feedback could not be stored just now; please retry",
            code="transient",
            retry_after=getattr(exc, "retry_after", RETRY_AFTER_S),
        ) from None
    return Response(status=200)
