"""The clinical knowledge: every dose, threshold, code and schedule, read from ``cards/`` and indexed once.

``loader`` reads, validates, cross-checks and indexes it into a ``Knowledge``; ``model`` and ``schemas`` are the
entries' and rule tables' schemas; ``drugs``, ``units`` and ``textmatch`` apply it (recognise a drug, convert a
unit, match a word); ``catalogue`` writes it out as the rule catalogue.
"""

from cds_service.knowledge.loader import Knowledge, Rules, load_knowledge
from cds_service.knowledge.model import KnowledgeError

__all__ = ["Knowledge", "KnowledgeError", "Rules", "load_knowledge"]
