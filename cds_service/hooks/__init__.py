"""One hook call, step by step, one module per hook kind.

request (``call``) -> prefetch completion -> patient record -> patient facts -> draft orders -> rules
-> findings -> cards (``steps``); ``order`` (order-select, order-sign) and ``patient_view`` decide which
steps a call needs. ``evaluate`` parses the request and hands it to the module of the service's hook.
"""

from __future__ import annotations

from cds_service.hooks import order, patient_view
from cds_service.hooks.call import Call, HookResult, parse_request
from cds_service.record.services import Service

__all__ = ["Call", "HookResult", "evaluate", "parse_request"]

BY_HOOK = {"order-select": order.evaluate, "order-sign": order.evaluate, "patient-view": patient_view.evaluate}


def evaluate(engine, service: Service, body, call: Call | None = None) -> HookResult:
    """The answer to one hook call; ``call`` (from the web layer) lets patient cards link to the monitoring app."""
    request = parse_request(body, service)
    return BY_HOOK[service.hook](engine, service, request, call)
