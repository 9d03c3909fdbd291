"""The HTTP side: the Flask application (``app.create_app``), its routes (``api``: discovery and hook calls;
``feedback``; ``openapi``), client authentication (``auth``), the language of a call (``localise``) and the
OperationOutcome responses (``responses``). Below it, a hook call knows nothing of HTTP (``cds_service.hooks``).
"""
