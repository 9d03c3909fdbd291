"""A hook call's two ends: the request, parsed and checked against the service it was sent to, and the result
handed back (the response body, each card with its rule id). ``Call`` is what the web layer knows of the call
that a card needs: where the caller reached this service and whether hook authentication is on."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from cds_service.cards import IssuedCard
from cds_service.errors import CdsError
from cds_service.record.services import Service
from cds_service.wire import HookRequest


@dataclass(frozen=True)
class Call:
    """The HTTP side of a hook call, as far as the cards need it: the base URL the caller reached this service at
    (links back to it) and whether hook authentication is on (the SMART app link then carries a ticket)."""

    base_url: str
    authenticated: bool = False


@dataclass(frozen=True)
class HookResult:
    """The response body and each card issued with its rule id, for the request answered."""

    body: dict
    cards: list[IssuedCard]
    request: HookRequest


def parse_request(body, service: Service) -> HookRequest:
    if not isinstance(body, dict):
        raise CdsError(400, "the request body must be a JSON object (a CDS Hooks request)")
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = first.get("msg", "invalid")
        raise CdsError(
            400,
            f"invalid CDS Hooks request: {where + ': ' if where else ''}{message}",
            expression=[where] if where else None,
        ) from None
    if request.hook != service.hook:
        raise CdsError(
            400, f"service {service.id} answers the {service.hook} hook, not {request.hook!r}", expression=["hook"]
        )
    return request
