"""CDS Hooks 2.0 service for JAK inhibitors.

Data flows one way:
request -> prefetch completion -> patient facts -> rules -> findings -> cards.
"""


def create_app(*args, **kwargs):
    """Application factory (imported lazily so light imports stay light)."""
    from cds_service.web.app import create_app as factory

    return factory(*args, **kwargs)
