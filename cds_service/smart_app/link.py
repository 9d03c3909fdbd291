"""The card link that opens the monitoring app, and the ticket it carries when hook authentication is on.

A ticket is an HMAC of (a keyed hash of the patient id, expiry), minted when a card carrying the app link is
answered to an authenticated hook call, handed to the app as the link's ``appContext`` and sent back by the app
as a bearer token (``routes``). The key is the service's (``JAK_CDS_APP_TICKET_KEY``, else random per process).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from cds_service import i18n
from cds_service.wire import Link

TICKET_TTL = 8 * 3600  # seconds: a working day's chart session
LAUNCH_PATH = "/app/launch"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ticket_key(configured: str | None) -> bytes:
    """The key tickets are signed with: the configured one, else random (gunicorn preloads the app, so its
    workers share it; several replicas need JAK_CDS_APP_TICKET_KEY)."""
    return configured.encode() if configured else secrets.token_bytes(32)


def _patient_tag(key: bytes, patient_id: str) -> str:
    return _b64(hmac.new(key, b"patient:" + patient_id.encode(), hashlib.sha256).digest()[:16])


def mint_ticket(key: bytes, patient_id: str, now: float | None = None, ttl: int = TICKET_TTL) -> str:
    body = _b64(
        json.dumps(
            {"p": _patient_tag(key, patient_id), "exp": int((now or time.time()) + ttl)}, separators=(",", ":")
        ).encode()
    )
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def check_ticket(key: bytes, ticket: str, patient_id: str, now: float | None = None) -> str | None:
    """None if the ticket is good for this patient, else why not (for the log; names no patient)."""
    body, _, sig = ticket.partition(".")
    try:
        good = hmac.compare_digest(_unb64(sig), hmac.new(key, body.encode(), hashlib.sha256).digest())
        claims = json.loads(_unb64(body)) if good else None
    except (ValueError, UnicodeDecodeError):
        return "malformed ticket"
    if not good or not isinstance(claims, dict):
        return "bad ticket signature"
    if not isinstance(claims.get("exp"), int) or claims["exp"] < (now or time.time()):
        return "ticket expired"
    if not hmac.compare_digest(str(claims.get("p")), _patient_tag(key, patient_id)):
        return "ticket is for another patient"
    return None


def launch_url(settings, base_url: str) -> str:
    """The app's SMART launch URL: under ``JAK_CDS_PUBLIC_BASE_URL``, else where the caller reached us."""
    return (settings.public_base_url or base_url).rstrip("/") + LAUNCH_PATH


def card_link(settings, key: bytes, base_url: str, authenticated: bool, patient_id: str) -> Link:
    """ "Open JAK monitoring", in the call's language, with a ticket for this patient when hook auth is on."""
    context = None
    if authenticated:
        context = json.dumps({"jakCdsTicket": mint_ticket(key, patient_id)}, separators=(",", ":"))
    return Link(
        label=i18n.say("Open JAK monitoring"), url=launch_url(settings, base_url), type="smart", appContext=context
    )
