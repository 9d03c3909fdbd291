"""OpenAPI 3 description of the service's HTTP API, served at ``GET /openapi.json``.

Public (no JWT): it describes the API, holds no patient data. The fuzz tests
generate requests from it, so keep it in step with ``api.py`` and ``feedback.py``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, json

from cds_service.web import smart_app

bp = Blueprint("openapi", __name__)

_OO = {"$ref": "#/components/schemas/OperationOutcome"}
_FHIR_JSON = {"application/fhir+json": {"schema": _OO}}


def _error(description: str) -> dict:
    return {"description": description, "content": _FHIR_JSON}


_UNAUTHORIZED = {"description": "missing or invalid JWT (empty body, WWW-Authenticate: Bearer)"}
_UNAVAILABLE = {
    "description": "the service's database is unavailable just now (feedback not stored, or the "
    "token's replay check impossible): retry after Retry-After seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "content": _FHIR_JSON,
}


def document(services: list[str] | None = None) -> dict:
    service_id = {"name": "service_id", "in": "path", "required": True, "schema": {"type": "string"}}
    if services:
        service_id["schema"] = {"type": "string", "enum": services}
        service_id["example"] = services[0]
    coding = {
        "type": "object",
        "required": ["code"],
        "properties": {"system": {"type": "string"}, "code": {"type": "string"}, "display": {"type": "string"}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "JAK inhibitor CDS Hooks service",
            "version": "2.0",
            "description": "CDS Hooks 2.0: discovery, service calls and feedback. Every call except "
            "this document needs `Authorization: Bearer <JWT>` signed by a trusted "
            "CDS client (ES384/RS384 or another ES*/RS* algorithm).",
        },
        "security": [{"cdsClientJwt": []}],
        "paths": {
            "/cds-services": {
                "get": {
                    "operationId": "discovery",
                    "summary": "Discovery: the services offered",
                    "responses": {
                        "200": {
                            "description": "discovery document",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Discovery"}}},
                        },
                        "401": _UNAUTHORIZED,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/cds-services/{service_id}": {
                "post": {
                    "operationId": "callService",
                    "summary": "Call a CDS service (a hook)",
                    "parameters": [service_id],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HookRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "cards",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CardsResponse"}}},
                        },
                        "400": _error("malformed request"),
                        "401": _UNAUTHORIZED,
                        "404": _error("unknown service"),
                        "412": _error(
                            "no patient data could be obtained: the call gave neither prefetch nor "
                            "fhirServer (patient-view: or nothing of the record could be read; a "
                            "JAK inhibitor order then gets 200 and a no-check warning card)"
                        ),
                        "413": _error("body too large"),
                        "415": _error("not JSON"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/cds-services/{service_id}/feedback": {
                "post": {
                    "operationId": "feedback",
                    "summary": "Feedback on cards (accepted / overridden)",
                    "parameters": [service_id],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
                    },
                    "responses": {
                        "200": {"description": "stored"},
                        "400": _error("malformed feedback"),
                        "401": _UNAUTHORIZED,
                        "404": _error("unknown service"),
                        "413": _error("body too large"),
                        "415": _error("not JSON"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            **smart_app.openapi_paths(),
        },
        "components": {
            "securitySchemes": {
                "cdsClientJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "appTicket": {"type": "http", "scheme": "bearer", "bearerFormat": "JAK app ticket"},
            },
            "schemas": {
                "OperationOutcome": {
                    "type": "object",
                    "required": ["resourceType", "issue"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                        "issue": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "Discovery": {
                    "type": "object",
                    "required": ["services"],
                    "properties": {
                        "services": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["hook", "id", "description"],
                                "properties": {
                                    "hook": {"type": "string"},
                                    "id": {"type": "string"},
                                    "title": {"type": "string"},
                                    "description": {"type": "string"},
                                    "prefetch": {"type": "object"},
                                },
                            },
                        }
                    },
                },
                "HookRequest": {
                    "type": "object",
                    "required": ["hook", "hookInstance", "context"],
                    "properties": {
                        "hook": {"type": "string", "enum": ["order-select", "order-sign", "patient-view"]},
                        "hookInstance": {"type": "string", "format": "uuid"},
                        "fhirServer": {"type": "string"},
                        "fhirAuthorization": {
                            "type": "object",
                            "required": ["access_token", "token_type"],
                            "properties": {
                                "access_token": {"type": "string"},
                                "token_type": {"type": "string"},
                                "expires_in": {"type": "integer"},
                                "scope": {"type": "string"},
                                "subject": {"type": "string"},
                            },
                        },
                        "context": {
                            "type": "object",
                            "required": ["patientId"],
                            "properties": {
                                "userId": {"type": "string"},
                                "patientId": {"type": "string"},
                                "encounterId": {"type": "string"},
                                "selections": {"type": "array", "items": {"type": "string"}},
                                "draftOrders": {"type": "object"},
                            },
                        },
                        "prefetch": {"type": "object", "additionalProperties": True},
                    },
                },
                "CardsResponse": {
                    "type": "object",
                    "required": ["cards"],
                    "properties": {
                        "cards": {
                            "type": "array",
                            "items": {"type": "object", "required": ["uuid", "summary", "indicator", "source"]},
                        }
                    },
                },
                "FeedbackRequest": {
                    "type": "object",
                    "required": ["feedback"],
                    "properties": {
                        "feedback": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["card", "outcome", "outcomeTimestamp"],
                                "properties": {
                                    "card": {"type": "string", "format": "uuid"},
                                    "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
                                    "acceptedSuggestions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id"],
                                            "properties": {"id": {"type": "string", "format": "uuid"}},
                                        },
                                    },
                                    "overrideReason": {
                                        "type": "object",
                                        "properties": {"reason": coding, "userComment": {"type": "string"}},
                                    },
                                    "outcomeTimestamp": {"type": "string", "format": "date-time"},
                                },
                            },
                        }
                    },
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    engine = current_app.extensions.get("jak_engine")
    services = sorted(engine.services) if engine else None
    return Response(json.dumps(document(services)), mimetype="application/json")
