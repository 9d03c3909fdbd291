"""Cards in Dutch and Norwegian Bokmål beside English (issue 25, phase 1).

The language of a call is its Accept-Language (q-values; no/nn read as nb), else JAK_CDS_LANGUAGE; every fixture
scenario gives the same cards in nl and nb as in English (indicators, rules, suggestions, actions), in the
translated words; a text added without translations stops start-up and fails here.
"""
from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po

from cds_service import i18n
from cds_service.web.app import create_app
from cds_service.cli import catalogues
from cds_service.cli.replay import SERVICE_FOR_HOOK, build_request, load_scenario
from cds_service.config import Settings
from cds_service.knowledge import catalogue, schemas
from cds_service.knowledge import model as knowledge_model
from cds_service.record.services import load_services
from tests.helpers.i18n import ENGLISH
from tests.helpers.i18n import english_sentences as _english_sentences

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "fixtures" / "fhir").glob("*.json"))


# -- which language ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    ("nl", "nl"), ("nl-BE", "nl"), ("nb", "nb"), ("nb-NO", "nb"),
    ("no", "nb"), ("nn", "nb"), ("nn-NO", "nb"), ("NO", "nb"),        # Norwegian and Nynorsk readers get Bokmål
    ("en-GB", "en"),
    ("de, fr;q=0.9", "en"),                                            # nothing we have: the default
    ("de, nl;q=0.5, en;q=0.4", "nl"),                                  # q-values, not order, decide
    ("en;q=0.4, nb;q=0.8", "nb"),
    ("nl;q=0, nb", "nb"),                                              # q=0 refuses
    ("nl, nb", "nl"),                                                  # a tie: the first listed
    ("*", "en"), ("", "en"), (None, "en"), (";;;,,q=", "en"), ("nl;q=abc", "en"),
])
def test_accept_language_chooses_the_language(header, expected):
    assert i18n.negotiate(header, "en") == expected


def test_the_deployment_default_applies_when_the_header_names_nothing_we_have(monkeypatch):
    assert i18n.negotiate("fr-CA", "nb") == "nb"
    monkeypatch.setenv("JAK_CDS_LANGUAGE", "no")
    assert Settings.from_env().language == "nb"
    monkeypatch.setenv("JAK_CDS_LANGUAGE", "klingon")
    with pytest.raises(SystemExit, match="JAK_CDS_LANGUAGE"):
        Settings.from_env()


# -- the catalogues ------------------------------------------------------------------------------------------------

def test_the_catalogues_translate_every_text_and_nothing_else(knowledge):
    """Fails when a knowledge text, a discovery text or a say() template is added (or changed) without its
    translations: run `python -m cds_service.cli.catalogues` to add it to cards/i18n/*.po, then translate it."""
    expected = set(catalogues.all_messages(knowledge, load_services(knowledge)))
    for language in ("nl", "nb"):
        path = i18n.catalogue_path(Settings().knowledge_dir, language)
        with path.open("rb") as handle:
            po = {m.id: m.string for m in read_po(handle, locale=language) if m.id}
        assert sorted(expected - set(po)) == [], f"{path}: texts missing (run python -m cds_service.cli.catalogues)"
        assert sorted(set(po) - expected) == [], f"{path}: texts no longer used (run python -m cds_service.cli.catalogues)"
        assert [m for m in expected if not po[m].strip()] == [], f"{path}: untranslated texts"


def _catalogues_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "cards"
    shutil.copytree(Settings().knowledge_dir, copy)
    return copy


def _edit_po(path: Path, language: str, english: str, translation: str | None) -> None:
    with path.open("rb") as handle:
        po = read_po(handle, locale=language)
    if translation is None:
        po.delete(english)
    else:
        po[english].string = translation
    with path.open("wb") as handle:
        write_po(handle, po, width=0)


def test_start_up_refuses_a_missing_or_empty_translation(tmp_path, knowledge):
    cards = _catalogues_copy(tmp_path)
    _edit_po(cards / "i18n" / "nb.po", "nb", "Active tuberculosis: do not start {drug}", None)
    _edit_po(cards / "i18n" / "nl.po", "nl", "Lipids", "")
    with pytest.raises(i18n.I18nError) as refused:
        create_app(Settings(knowledge_dir=cards, auth="off", database_url="sqlite://"), knowledge=knowledge)
    assert "nb: no translation of 'Active tuberculosis: do not start {drug}'" in str(refused.value)
    assert "nl: no translation of 'Lipids'" in str(refused.value)


def test_start_up_refuses_a_translation_with_other_placeholders(tmp_path, knowledge):
    cards = _catalogues_copy(tmp_path)
    _edit_po(cards / "i18n" / "nl.po", "nl", "Active tuberculosis: do not start {drug}",
             "Actieve tuberculose: start {geneesmiddel} niet")
    with pytest.raises(i18n.I18nError, match="placeholders"):
        i18n.load_translations(knowledge, cards, services=load_services(knowledge))


def test_a_missing_catalogue_stops_start_up(tmp_path, knowledge):
    cards = _catalogues_copy(tmp_path)
    (cards / "i18n" / "nb.po").unlink()
    with pytest.raises(i18n.I18nError, match="catalogue missing"):
        i18n.load_translations(knowledge, cards)


# Every str field of a knowledge schema is either text a clinician reads (TEXT_FIELDS: translated) or one of
# these (codes, ids, units, words that are matched). A new field in neither list fails: classify it.
NOT_TEXT_FIELDS = {
    "id", "drug", "drugs", "sources", "concept", "concepts", "concern", "names", "exclude_words", "history_words",
    "words", "atc", "atc_not", "rxnorm", "cvx", "snomed", "icd10", "icd10_not", "history_snomed", "history_icd10",
    "loinc", "url", "code", "system", "units", "canonical_unit", "log10_units", "indications", "indication",
    "brands", "analyte", "analytes", "answers", "positive", "accept", "codes", "interpretation", "override_set",
    "tests", "smoking", "smoking_test", "procedure_snomed", "medication_classes", "positive_tests",
    "quantity_at_least", "condition", "interacting", "core_tests", "surface_tests", "dna_test", "antibody_tests",
    "rna_test", "screen_tests", "load_test", "treatment_class", "persistent_positive", "prior_classes", "members",
    "not_checked", "snomed_class", "below", "above", "default_uln", "by", "categories", "sets",
}


def _models():
    import inspect
    import typing

    from pydantic import BaseModel

    found = {t.model for t in schemas.load_all().values()}
    found |= {o for o in vars(knowledge_model).values() if inspect.isclass(o) and issubclass(o, BaseModel)}
    todo = list(found)
    while todo:
        current = todo.pop()
        for field in current.model_fields.values():
            stack = [field.annotation]
            while stack:
                kind = stack.pop()
                stack += list(typing.get_args(kind))
                if inspect.isclass(kind) and issubclass(kind, BaseModel) and kind not in found:
                    found.add(kind)
                    todo.append(kind)
    return found


def test_every_text_field_of_the_knowledge_is_classified():
    unclassified = []
    for model in _models():
        for name, field in model.model_fields.items():
            if "str" in str(field.annotation) or "WordList" in str(field.annotation):
                if name not in i18n.TEXT_FIELDS and name not in NOT_TEXT_FIELDS:
                    unclassified.append(f"{model.__name__}.{name}")
    assert unclassified == [], "add each to i18n.TEXT_FIELDS (clinician-facing) or to NOT_TEXT_FIELDS here"


def test_say_formats_numbers_and_dates_for_the_locale(knowledge):
    translations = i18n.load_translations(knowledge, Settings().knowledge_dir)
    template = "{entries} entries in {tables} tables of {families} families."
    assert i18n.say(template, entries=1234, tables=2, families=3) == "1234 entries in 2 tables of 3 families."
    with i18n.using(translations.catalogues["nl"]):
        assert i18n.say(template, entries=1234, tables=2, families=3) == "1.234 regels in 2 tabellen van 3 families."
        assert i18n.number(0.75) == "0,75" and i18n.day(date(2026, 11, 1)) == "1 nov 2026"
    with i18n.using(translations.catalogues["nb"]):
        assert i18n.number(1.5) == "1,5" and i18n.day(date(2026, 11, 1)) == "1. nov. 2026"
    assert i18n.number(0.75) == "0.75" and i18n.day(date(2026, 11, 1)) == "2026-11-01"     # English as before


# -- the cards -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def replayed(knowledge, templates):
    """Every fixture scenario called in en, nl and nb (one app per evaluation date)."""
    apps: dict = {}
    out = []
    for path in FIXTURES:
        scenario = load_scenario(path)
        if scenario.at not in apps:
            apps[scenario.at] = create_app(Settings(auth="off", database_url="sqlite://", evaluation_date=scenario.at),
                                           knowledge=knowledge).test_client()
        body = build_request(scenario, templates)
        calls = {}
        for language in ("en", "nl", "nb"):
            response = apps[scenario.at].post(f"/cds-services/{SERVICE_FOR_HOOK[scenario.hook]}", json=body,
                                              headers={"Accept-Language": language})
            assert response.status_code == 200, (path.stem, language)
            assert response.headers["Content-Language"] == language
            calls[language] = response.get_json()["cards"]
        out.append((path.stem, calls))
    return out


def _codes(resource) -> list:
    """The codes of an action's resource (its words may be translated, its codes not)."""
    if not isinstance(resource, dict):
        return []
    found = []
    for key, value in sorted(resource.items()):
        if isinstance(value, (str, int, float)) and key in (
                "system", "code", "value", "unit", "resourceType", "id", "status", "intent", "frequency"):
            found.append((key, value))
        elif isinstance(value, dict):
            found += _codes(value)
        elif isinstance(value, list):
            for item in value:
                found += _codes(item)
    return found


def _shape(card: dict) -> tuple:
    return (card["indicator"], card["source"]["topic"]["code"], card.get("selectionBehavior"),
            tuple(c["code"] for c in card.get("overrideReasons") or ()),
            tuple(link["url"] for link in card.get("links") or ()),
            tuple((s.get("isRecommended"), tuple((a["type"], tuple(a.get("resourceId") or ()), tuple(_codes(a.get("resource"))))
                                                  for a in s["actions"])) for s in card.get("suggestions") or ()))


def test_every_scenario_gives_the_same_cards_in_every_language(replayed):
    assert len(replayed) == len(FIXTURES) > 300
    for stem, calls in replayed:
        english = [_shape(c) for c in calls["en"]]
        for language in ("nl", "nb"):
            assert [_shape(c) for c in calls[language]] == english, (stem, language)


def test_the_cards_are_in_the_language_asked_for(replayed):
    """The clinical terms of the sources (S000, S001, S004) reach the cards."""
    said = {lang: "\n".join(c["summary"] + "\n" + c["detail"] for _, calls in replayed for c in calls[lang])
            for lang in ("en", "nl", "nb")}
    for term in ("Actieve tuberculose", "nierfunctie", "Zwangerschap vastgelegd", "Screening vóór",
                 "Voordeel weegt op tegen risico"):
        assert term in said["nl"] + "\n".join(o["display"] for _, calls in replayed for c in calls["nl"]
                                              for o in c.get("overrideReasons") or ()), term
    for term in ("Aktiv tuberkulose", "nyrefunksjon", "Graviditet registrert", "Screening før"):
        assert term in said["nb"], term
    assert "Actieve tuberculose" not in said["en"] and "Aktiv tuberkulose" not in said["en"]


DRUG_OR_CODE = re.compile(r"^[\W\d_]*$")


def test_no_english_sentence_is_left_in_the_translated_summaries(replayed):
    for stem, calls in replayed:
        for language in ("nl", "nb"):
            for card, english in zip(calls[language], calls["en"]):
                assert _english_sentences(card["summary"]) == [], (stem, language, card["summary"])
                if not DRUG_OR_CODE.match(english["summary"]):
                    assert card["summary"] != english["summary"], (stem, language, card["summary"])


# Every clinician-facing text of every card kind (the could-not-check card too) is translated: the details,
# suggestion labels and action descriptions carry no English sentence. The one exception is named here: the
# bibliographic titles of the sources keep their original language (docs/i18n.md).
STILL_ENGLISH = {
    r"\[[^\]]*\]\([^)]*\)( \[[^\]]*\])?": "source links: bibliographic titles keep their original (docs/i18n.md)",
}


def _without_source_titles(text: str) -> str:
    for pattern in STILL_ENGLISH:
        text = re.sub(pattern, " ", text)
    return text


def test_no_english_sentence_is_left_in_any_card(replayed):
    checked = 0
    for stem, calls in replayed:
        for language in ("nl", "nb"):
            for card in calls[language]:
                texts = [card["summary"], card["detail"]] + [s["label"] for s in card.get("suggestions") or ()] + [
                    a["description"] for s in card.get("suggestions") or () for a in s["actions"]]
                for text in texts:
                    checked += 1
                    left = _english_sentences(_without_source_titles(text))
                    assert left == [], (stem, language, card["source"]["topic"]["code"], left)
    assert checked > 900


def test_the_dose_and_could_not_check_cards_are_in_the_language_asked_for(replayed):
    """Texts made in the facts, the dose rules and the card frame (phase 2b): the indication line, how a value was
    read, the frequency, the could-not-check frame, and the dose text of the suggested order."""
    def said(language):
        cards = [c for _, calls in replayed for c in calls[language]]
        texts = [c["summary"] + "\n" + c["detail"] for c in cards] + [s["label"] for c in cards for s in c.get("suggestions") or ()]
        texts += [d.get("text", "") for c in cards for s in c.get("suggestions") or () for a in s["actions"]
                  if isinstance(a.get("resource"), dict) for d in a["resource"].get("dosageInstruction") or ()]
        return "\n".join(texts)

    nl, nb, en = said("nl"), said("nb"), said("en")
    for term in ("**Indicatie:**", "(uit de actieve aandoening)", "tweemaal daags", "eenmaal daags",
                 "Deze controles zijn **niet** uitgevoerd", "Niet gecontroleerd:", "Verlaag ", "**Aanbevolen:**",
                 "door het laboratorium gerapporteerde eGFR", "geen serumcreatinine in de laatste"):
        assert term in nl, term
    for term in ("**Indikasjon:**", "(fra den aktive tilstanden)", "to ganger daglig", "én gang daglig",
                 "Disse kontrollene ble **ikke** utført", "Ikke kontrollert:", "Reduser ", "**Anbefalt:**",
                 "eGFR rapportert av laboratoriet", "ingen serumkreatinin de siste"):
        assert term in nb, term
    assert "(from the active condition)" in en and "(from the active condition)" not in nl + nb
    assert "twice daily" in en and "twice daily" not in nl + nb
    assert "**Bronnen**" in nl and "**Kilder**" in nb and "**Sources**" in en and "**Sources**" not in nl + nb


def test_the_monitoring_and_screening_details_are_in_the_language_asked_for(replayed):
    """Texts built in code (not only the knowledge's) reach the cards: dates, numbers and the rule modules' words."""
    said = {lang: "\n".join(c["detail"] for _, calls in replayed for c in calls[lang]) for lang in ("nl", "nb")}
    for term in ("**Behandeling gestart:**", "**Vastgelegd:**", "aanvragen", "vastgelegd", "x de bovengrens van normaal"):
        assert term in said["nl"] + "\n".join(s["label"] for _, calls in replayed for c in calls["nl"]
                                              for s in c.get("suggestions") or ()), term
    for term in ("**Behandling startet:**", "**Registrert:**", "registrert", "x øvre referansegrense"):
        assert term in said["nb"], term
    assert re.search(r"\b\d{1,2} (jan|feb|mrt|apr|mei|jun|jul|aug|sep|okt|nov|dec)\.? 20\d\d", said["nl"])
    assert re.search(r"\b\d{1,2}\. (jan|feb|mar|apr|mai|jun|jul|aug|sep|okt|nov|des)\.? 20\d\d", said["nb"])


def test_override_reasons_links_and_source_labels_are_translated(replayed):
    for stem, calls in replayed:
        for language in ("nl", "nb"):
            for card in calls[language]:
                for reason in card.get("overrideReasons") or ():
                    assert _english_sentences(reason["display"]) == [] and not ENGLISH.search(reason["display"])
    _, calls = next(r for r in replayed if any(c.get("overrideReasons") for c in r[1]["nl"]))
    assert {o["display"] for c in calls["nl"] for o in c.get("overrideReasons") or ()} \
        != {o["display"] for c in calls["en"] for o in c.get("overrideReasons") or ()}


def test_discovery_follows_the_language(app):
    client = app.test_client()
    english = client.get("/cds-services").get_json()["services"]
    response = client.get("/cds-services", headers={"Accept-Language": "nn-NO, en;q=0.5"})
    assert response.headers["Content-Language"] == "nb"
    norwegian = response.get_json()["services"]
    assert [s["id"] for s in norwegian] == [s["id"] for s in english]
    assert [s["prefetch"] for s in norwegian] == [s["prefetch"] for s in english]
    assert "Kontroll av forskrivning av JAK-hemmer (signere)" in [s["title"] for s in norwegian]
    assert client.get("/cds-services", headers={"Accept-Language": "fr"}).headers["Content-Language"] == "en"


def test_the_rule_catalogue_in_each_language_is_committed_and_current(knowledge):
    translations = i18n.load_translations(knowledge, Settings().knowledge_dir)
    for language in ("nl", "nb"):
        path = ROOT / "docs" / f"rule-catalogue.{language}.md"
        with i18n.using(translations.catalogues[language]):
            expected = catalogue.generate(translations.knowledge[language])
        assert path.exists() and path.read_text(encoding="utf-8") == expected, \
            f"{path.name} is out of date: run `make rules`"
    assert "Actieve tuberculose: start {drug} niet" in (ROOT / "docs" / "rule-catalogue.nl.md").read_text()
    assert "Aktiv tuberkulose: ikke start {drug}" in (ROOT / "docs" / "rule-catalogue.nb.md").read_text()
    # the structural labels too (headings, table headers, entry labels), not only the knowledge's texts
    for language, labels in (("nl", ("## Herkende geneesmiddelen", "### Tabel `", "- **bronnen:**", "| geneesmiddel |")),
                             ("nb", ("## Gjenkjente legemidler", "### Tabell `", "- **kilder:**", "| legemiddel |"))):
        text = (ROOT / "docs" / f"rule-catalogue.{language}.md").read_text()
        for label in labels:
            assert label in text, (language, label)
        for english in ("## Drugs recognised", "## Coverage:", "- **sources:**", " entries)", "(no entries)"):
            assert english not in text, (language, english)


def test_the_audit_records_each_cards_language(app, client):
    from fixtures.builders import TODAY  # noqa: F401  (the app's evaluation date)

    scenario = load_scenario(next(p for p in FIXTURES if p.stem == "core-no-labs"))
    from cds_service.record.services import default_templates

    body = build_request(scenario, default_templates())
    store = app.extensions["jak_store"]
    store.migrate()
    response = client.post("/cds-services/jak-order-sign", json=body, headers={"Accept-Language": "no"})
    assert response.status_code == 200 and response.get_json()["cards"]
    assert store.audit.flush()
    from sqlalchemy import select

    from cds_service.store.schema import issued_card
    with store.engine.connect() as conn:
        languages = {row.language for row in conn.execute(select(issued_card.c.language))}
    assert languages == {"nb"}
