"""Refusals as FHIR OperationOutcomes.

Every refusal the service makes is a 4xx whose body tells the integrator what
was wrong, in the format their FHIR tooling already understands. Any step of a
hook call may raise ``CdsError``; the web layer answers it (``responses``).
"""

from __future__ import annotations


class CdsError(Exception):
    """An error that becomes an HTTP response with an OperationOutcome body."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        code: str = "invalid",
        expression: list[str] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.expression = expression or []
        self.retry_after = retry_after  # seconds, sent as Retry-After (503)


def operation_outcome(
    diagnostics: str, code: str = "invalid", severity: str = "error", expression: list[str] | None = None
) -> dict:
    issue: dict[str, str | list[str]] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
