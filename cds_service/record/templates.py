"""Prefetch templates: the FHIR queries a service asks the EHR for, and what each one reads.

A template is a FHIR search relative to ``fhirServer`` with CDS Hooks 2.0 tokens (``{{context.patientId}}``,
``{{userPractitionerId}}`` ...): ``render`` fills them from the hook context, the same way for the EHR's
prefetch and for our own fallback fetch.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from cds_service.fhir.values import query_type

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


class UnresolvedToken(ValueError):
    """A prefetch template uses a token the request cannot fill."""


def render(template: str, context: dict) -> str:
    """Fill CDS Hooks 2.0 prefetch tokens from the hook context."""

    def replace(match: re.Match) -> str:
        token = match.group(1)
        if token.startswith("context."):
            value = context.get(token[len("context.") :])
        elif token in _USER_TOKENS:
            user = str(context.get("userId") or "")
            kind, _, ident = user.partition("/")
            value = ident if kind == _USER_TOKENS[token] else None
        else:
            value = None
        if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
            raise UnresolvedToken(token)
        return quote(str(value), safe="")

    return _TOKEN.sub(replace, template)


def what_a_query_reads(template: str) -> list[str]:
    """``Observation?...&code=a,b`` -> ["Observation|a", "Observation|b"]; ``Condition?...`` -> ["Condition"]."""
    kind = query_type(template)
    for param in template.partition("?")[2].split("&"):
        name, _, value = param.partition("=")
        if name == "code":
            return [f"{kind}|{code.split('|')[-1]}" for code in value.split(",")]
    return [kind]
