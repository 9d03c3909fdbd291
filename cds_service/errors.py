"""Errors as FHIR OperationOutcome responses.

Every refusal the service makes is a 4xx whose body tells the integrator what
was wrong, in the format their FHIR tooling already understands; a 503 (the
database is unavailable just now) also says when to retry (Retry-After).
"""
from __future__ import annotations

from flask import Response, json


class CdsError(Exception):
    """An error that becomes an HTTP response with an OperationOutcome body."""

    def __init__(self, status: int, diagnostics: str, code: str = "invalid",
                 expression: list[str] | None = None, retry_after: int | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.expression = expression or []
        self.retry_after = retry_after          # seconds, sent as Retry-After (503)


def operation_outcome(diagnostics: str, code: str = "invalid", severity: str = "error",
                      expression: list[str] | None = None) -> dict:
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(status: int, diagnostics: str, code: str = "invalid",
                     expression: list[str] | None = None, retry_after: int | None = None) -> Response:
    body = operation_outcome(diagnostics, code, expression=expression)
    response = Response(json.dumps(body), status=status, mimetype="application/fhir+json")
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(retry_after)))
    return response


def unavailable_response(diagnostics: str, retry_after: int) -> Response:
    """503 Service Unavailable: the database cannot be used just now; the caller may retry."""
    return outcome_response(503, diagnostics, "transient", retry_after=retry_after)
