"""Card rendering rules a clinician notices: the right sources, no repeated words."""
import pytest

from cds_service.cards import CardParts, missing_card, sources_for
from cds_service.findings import Missing
from fixtures.builders import condition, draft_order, patient


def test_another_drugs_product_information_is_not_cited():
    assert sources_for(["S000", "EU-upadacitinib", "EU-tofacitinib", "S003"], "tofacitinib") == \
        ["S000", "EU-tofacitinib", "S003"]
    assert sources_for(["EU-upadacitinib"], "tofacitinib") == ["EU-upadacitinib"]    # never left without a source


def test_tofacitinib_checklist_card_cites_no_upadacitinib_label(hook):
    cards = hook([patient(), condition("69896004", "Rheumatoid arthritis"), draft_order("tofacitinib 5 mg", 5, per_day=2)])
    assert cards
    for card in cards:
        assert "rinvoq" not in card["source"]["label"].lower()
        assert "EPAR/rinvoq" not in card["detail"]


def test_could_not_check_summary_does_not_repeat_the_drug(knowledge):
    gap = Missing("x", "tofacitinib dose for renal function", "no serum creatinine", ("S001",), "o1", "tofacitinib")
    card = missing_card(knowledge, CardParts.of(knowledge), [gap], "tofacitinib")
    assert card.summary.lower().count("tofacitinib") == 1


def test_parts_shared_between_cards_cannot_be_changed_through_one_card(knowledge):
    """Override reasons and links are made once per knowledge (CardParts) and shared by every card: changing them
    through one card (a caller post-processing a response) must fail, not alter the next card."""
    gap = Missing("x", "the patient's age", "no birth date", ("S001",), "o1", "tofacitinib")
    parts = CardParts.of(knowledge)
    first, second = missing_card(knowledge, parts, [gap], "tofacitinib"), missing_card(knowledge, parts, [gap], "tofacitinib")
    assert first.overrideReasons and first.overrideReasons == second.overrideReasons
    with pytest.raises(AttributeError):
        first.overrideReasons[0].display = "changed"
    assert second.overrideReasons[0].display != "changed"
    assert first.uuid != second.uuid


def test_a_card_the_spec_forbids_cannot_be_built():
    """The wire card checks the spec's rules itself: no rule's text can put a card an EHR must reject on the wire."""
    from cds_service.wire import Card, Source

    source = Source(label="PRAC", url="https://example.org/prac")
    with pytest.raises(ValueError, match="summary"):
        Card(summary="x" * 140, indicator="warning", source=source)
    with pytest.raises(ValueError, match="summary"):
        Card(summary="", indicator="warning", source=source)
    with pytest.raises(ValueError, match="indicator"):
        Card(summary="Check", indicator="severe", source=source)
    assert Card(summary="x" * 139, indicator="warning", source=source).wire()["summary"] == "x" * 139


def test_nothing_empty_goes_on_the_wire_and_info_cards_take_no_override_reasons():
    from cds_service.wire import Card, Coding, Source

    reason = Coding(code="benefit", system="https://example.org/override", display="Benefit outweighs risk")
    info = Card(summary="Note", indicator="info", source=Source(label="PRAC", url=""), detail="",
                suggestions=[], overrideReasons=(reason,), links=[])
    assert info.wire() == {"uuid": info.uuid, "summary": "Note", "indicator": "info", "source": {"label": "PRAC"}}
    warning = Card(summary="Check", indicator="warning", source=Source(label="PRAC"), overrideReasons=(reason,))
    assert warning.wire()["overrideReasons"] == [
        {"code": "benefit", "system": "https://example.org/override", "display": "Benefit outweighs risk"}]
