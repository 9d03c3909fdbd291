"""FHIR plumbing, nothing clinical: reading FHIR JSON (``values``, ``tolerant``, ``strict_json``), checking a draft
order is R4 (``r4_check``), searching resources in memory (``query``), and the fallback fetch from the EHR's
FHIR server (``client`` with ``reads``, ``servers`` and ``outbound``)."""
