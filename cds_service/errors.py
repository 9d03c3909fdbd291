"""Errors as FHIR OperationOutcome responses.

Every refusal the service makes is a 4xx whose body tells the integrator what
was wrong, in the format their FHIR tooling already understands.
"""
from __future__ import annotations

from flask import Response, json


class CdsError(Exception):
    """An error that becomes an HTTP response with an OperationOutcome body."""

    def __init__(self, status: int, diagnostics: str, code: str = "invalid",
                 expression: list[str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.expression = expression or []


def operation_outcome(diagnostics: str, code: str = "invalid", severity: str = "error",
                      expression: list[str] | None = None) -> dict:
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(status: int, diagnostics: str, code: str = "invalid",
                     expression: list[str] | None = None) -> Response:
    body = operation_outcome(diagnostics, code, expression=expression)
    return Response(json.dumps(body), status=status, mimetype="application/fhir+json")
