"""OperationOutcome HTTP responses: a refusal (``errors.CdsError``) as the 4xx it is, and a 503 (the database is
unavailable just now) that also says when to retry (Retry-After)."""

from __future__ import annotations

from flask import Response, json

from cds_service.errors import operation_outcome


def outcome_response(
    status: int,
    diagnostics: str,
    code: str = "invalid",
    expression: list[str] | None = None,
    retry_after: int | None = None,
) -> Response:
    body = operation_outcome(diagnostics, code, expression=expression)
    response = Response(json.dumps(body), status=status, mimetype="application/fhir+json")
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(retry_after)))
    return response


def unavailable_response(diagnostics: str, retry_after: int) -> Response:
    """503 Service Unavailable: the database cannot be used just now; the caller may retry."""
    return outcome_response(503, diagnostics, "transient", retry_after=retry_after)
