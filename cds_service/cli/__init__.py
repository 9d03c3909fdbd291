"""``jak-cds``: the command line (serve, replay, corpus, rules, report, the development FHIR servers)."""

from cds_service.cli.commands import main

__all__ = ["main"]
