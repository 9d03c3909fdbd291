"""Persistent store: issued cards (the audit), feedback, the JWT replay check, report queries.

``database`` holds the ``Store`` the service uses; ``schema`` its tables and migrations; ``connection`` how it
connects; ``audit`` and ``spool`` how issued-card rows reach the database through an outage; ``jti`` the
replay check; ``health`` what the process knows of its database.
"""

from cds_service.store.database import Store
from cds_service.store.health import RETRY_AFTER_S, StoreUnavailable, db_error_kind
from cds_service.store.schema import FeedbackRow

__all__ = ["RETRY_AFTER_S", "FeedbackRow", "Store", "StoreUnavailable", "db_error_kind"]
