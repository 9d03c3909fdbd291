"""The patient record of one hook call: what the services ask the EHR for (``services``, ``templates``), how what
the EHR sent is completed from its FHIR server (``completion``), and the record read once into an index that
facts and orders read (``index``)."""
