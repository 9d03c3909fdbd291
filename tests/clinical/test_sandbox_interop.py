"""Requests shaped exactly as the CDS Hooks sandbox (cds-hooks/sandbox) sends them.

The sandbox builds its draft MedicationRequest in ``createFhirResource``
(src/reducers/medication-reducers.js): RxNorm coding from its own medication
list, dose as a number of ``{pill}`` (UCUM annotation), frequency per day,
``reasonCode`` as a single CodeableConcept (not a list) and ``category`` as an
object; the draftOrders Bundle has no ``type``.
"""
from fixtures.builders import condition, full_baseline, patient
from tests.helpers.hooks import alerts, rule_of
from tests.helpers.sandbox import TOFACITINIB_5_TABLET, sandbox_order

RA = condition("69896004", "Rheumatoid arthritis")
AD = condition("24079001", "Atopic dermatitis")


def record(age=45, extra=()):
    return [patient(age=age), *full_baseline(age=age), *extra]


def _dose_gaps(cards):
    return [c for c in cards if rule_of(c) == "missing-data" and "dose" in c["summary"]]


def test_pills_are_read_as_tablets_times_the_rxnorm_strength(hook):
    """Regression: '{pill}' was 'could not be interpreted', so every sandbox order got a could-not-check card."""
    cards = hook(record(extra=[RA]), drafts=[sandbox_order(pills=1, per_day=2, reason=RA)])
    assert _dose_gaps(cards) == []
    assert alerts(cards) == []


def test_pills_still_need_a_known_strength(hook):
    """Near miss: a pill count of a product whose strength is nowhere stated is said, not guessed."""
    order = sandbox_order(drug=("1357536", "tofacitinib"), pills=1, per_day=2, reason=RA)
    [gap] = _dose_gaps(hook(record(extra=[RA]), drafts=[order]))
    assert "tablet strength is not stated" in gap["detail"]


def test_an_unknown_unit_is_still_reported(hook):
    order = sandbox_order(pills=1, per_day=2, reason=RA)
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["code"] = "{puff}"
    [gap] = _dose_gaps(hook(record(extra=[RA]), drafts=[order]))
    assert "could not be interpreted" in gap["detail"]



def test_long_source_labels_are_cut_at_a_word_with_an_ellipsis(knowledge):
    """Regression: the sandbox showed link labels cut mid-word ('... side effects with JAK in')."""
    from cds_service.cards import CardParts, finding_card
    from cds_service.findings import Finding

    long_ids = [sid for sid, s in knowledge.sources.items() if len(s.label) > 80]
    short_ids = [sid for sid, s in knowledge.sources.items() if len(s.label) <= 80]
    assert long_ids and short_ids
    card = finding_card(knowledge, CardParts.of(knowledge), Finding("r", "c", "info", "summary", "detail", [long_ids[0], short_ids[0]]))
    long_label, short_label = (link.label for link in card.links)
    full = knowledge.sources[long_ids[0]].label
    assert long_label.endswith("…") and len(long_label) <= 80
    assert full.startswith(long_label[:-1]) and full[len(long_label) - 1] == " "
    assert short_label == knowledge.sources[short_ids[0]].label


def dstu2_order(drug=TOFACITINIB_5_TABLET, pills=1, per_day=2) -> dict:
    """The sandbox's draft on a DSTU2 FHIR server (its default): a MedicationOrder."""
    code, name = drug
    return {"resourceType": "MedicationOrder", "id": "order-123", "status": "draft",
            "patient": {"reference": "Patient/p1"}, "dateWritten": "2026-11-01",
            "dosageInstruction": [{"timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnits": "d"}},
                                   "doseQuantity": {"value": pills, "system": "http://unitsofmeasure.org",
                                                    "code": "{pill}"}}],
            "medicationCodeableConcept": {"text": name, "coding": [
                {"display": name, "code": code, "system": "http://www.nlm.nih.gov/research/umls/rxnorm"}]}}


def test_a_dstu2_medication_order_of_a_jak_inhibitor_is_said_not_silently_ignored(hook):
    """Regression: a MedicationOrder was skipped, so a 70-year-old's tofacitinib order got no card at all."""
    for name in ("order-sign", "order-select"):
        [card] = hook(record(age=70, extra=[RA]), name, drafts=[dstu2_order()])
        assert (card["indicator"], rule_of(card)) == ("warning", "missing-data")
        assert "DSTU2 MedicationOrder" in card["summary"] and "tofacitinib" in card["summary"]
        assert "R4 MedicationRequest" in card["detail"] and "…" not in card["summary"]


def test_a_dstu2_order_of_a_jak_inhibitor_is_said_even_when_no_record_can_be_read(hook):
    """The sandbox on a DSTU2 server without prefetch: the card needs only the draft (no 412)."""
    [card] = hook([patient(age=70)], drafts=[dstu2_order()], prefetch=False)
    assert rule_of(card) == "missing-data" and "DSTU2 MedicationOrder" in card["summary"]


def test_a_dstu2_order_of_another_drug_stays_silent(hook):
    order = dstu2_order(drug=("105586", "methotrexate 2.5 MG Oral Tablet"))
    assert hook(record(age=70, extra=[RA]), drafts=[order]) == []


def test_a_dstu2_order_of_topical_ruxolitinib_stays_silent(hook):
    order = dstu2_order(drug=("2570581", "ruxolitinib 15 MG/ML Topical Cream"))
    assert hook(record(age=70, extra=[RA]), drafts=[order]) == []
