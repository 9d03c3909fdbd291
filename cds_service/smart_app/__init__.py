"""The SMART on FHIR monitoring app, served under ``/app/`` (issue 24; design in docs/smart-app.md).

``link``: the card link that opens it and the ticket that stands in for hook authentication; ``routes``: its
pages and JSON endpoints (a blueprint); ``monitoring_state``: what the app shows, worked out by the
patient-view rules from the record the app read.
"""

from cds_service.smart_app.link import check_ticket, mint_ticket

__all__ = ["check_ticket", "mint_ticket"]
