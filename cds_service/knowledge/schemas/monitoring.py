"""Monitoring of a patient on a JAK inhibitor (patient-view; decision 10).

``[[monitoring_schedule]]``: tests (or records such as a skin examination) due at fixed
weeks after the start (``checkpoints``: due at ``week``, overdue from ``overdue_week``; a
result up to ``early_days`` before the week counts), then every ``every_days`` (due)
with ``overdue_days`` as the overdue limit. ``none_on_record = "info"`` makes "nothing on
record" an information card (used where the record may simply not be coded, e.g. the
yearly skin examination) instead of a due/overdue test.
``[[response_review]]``: a time-boxed reminder (e.g. week 12 response review of
upadacitinib in atopic dermatitis), shown between ``from_week`` and ``until_week``.
The on-treatment lab thresholds (decision 11) live in ``[[lab_threshold]]`` with phase
"on_treatment".
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds_service.knowledge.schemas import register
from cds_service.knowledge.schemas.base import Strict, common_checks, indication_checks
from cds_service.knowledge.schemas.screening import RecordPart, check_parts


class Checkpoint(Strict):
    week: int = Field(gt=0)
    overdue_week: int = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Checkpoint:
        if self.overdue_week <= self.week:
            raise ValueError("overdue_week must be after week")
        return self


class MonitoringSchedule(Strict):
    id: str
    display: str
    drugs: list[str] = Field(min_length=1)
    parts: list[RecordPart] = Field(min_length=1)
    checkpoints: list[Checkpoint] = []
    early_days: int = Field(default=7, ge=0)
    every_days: int = Field(gt=0)
    overdue_days: int = Field(gt=0)
    none_on_record: Literal["schedule", "info"] = "schedule"
    action: str
    sources: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringSchedule:
        if self.overdue_days <= self.every_days:
            raise ValueError("overdue_days must be longer than every_days")
        weeks = [c.week for c in self.checkpoints]
        if weeks != sorted(set(weeks)):
            raise ValueError("checkpoints must be in increasing week order")
        return self

    def record_keys(self) -> list[str]:
        return [k for p in self.parts for k in p.record_keys()]


class ResponseReview(Strict):
    id: str
    drug: str
    indications: list[str] = Field(min_length=1)
    from_week: int = Field(gt=0)
    until_week: int = Field(gt=0)
    summary: str
    action: str
    sources: list[str] = Field(min_length=1)


def check_schedules(knowledge, entries: list[MonitoringSchedule]) -> list[str]:
    problems: list[str] = []
    for entry in entries:
        problems += common_checks(knowledge, entry, entry.drugs)
        problems += check_parts(knowledge, f"rule {entry.id}", entry.parts)
    return problems


def check_reviews(knowledge, entries: list[ResponseReview]) -> list[str]:
    problems: list[str] = []
    for entry in entries:
        problems += common_checks(knowledge, entry, [entry.drug])
        problems += indication_checks(knowledge, entry)
        if entry.until_week <= entry.from_week:
            problems.append(f"rule {entry.id}: until_week must be after from_week")
    return problems


register("monitoring_schedule", MonitoringSchedule, "list", check_schedules)
register("response_review", ResponseReview, "list", check_reviews)
