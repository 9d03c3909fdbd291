"""The rule catalogue is generated from the knowledge data, covers every registered table, and is committed."""
import argparse
import dataclasses
from pathlib import Path

from pydantic import Field

from cds_service.knowledge import Rules, catalogue, schemas
from cds_service.knowledge.schemas.base import Strict

DOC = Path(__file__).resolve().parents[2] / "docs" / "rule-catalogue.md"


def test_committed_catalogue_is_in_step_with_the_knowledge_files(knowledge):
    assert DOC.exists(), "docs/rule-catalogue.md is missing: run `make rules`"
    assert DOC.read_text(encoding="utf-8") == catalogue.generate(knowledge), \
        "docs/rule-catalogue.md is out of date: run `make rules` (jak-cds rules --output docs/rule-catalogue.md)"


def test_every_registered_table_and_every_entry_is_listed_with_its_sources(knowledge):
    text = catalogue.generate(knowledge)
    for table in schemas.load_all().values():
        assert f"`[[{table.name}]]`" in text or f"`[{table.name}.<id>]`" in text, table.name
        for entry_id, entry in catalogue.entries_of(knowledge, table):
            assert f"#### `{entry_id}`" in text, entry_id
            for source_id in getattr(entry, "sources", []) or []:
                assert f"[{source_id}] [{knowledge.sources[source_id].label}]({knowledge.sources[source_id].url})" \
                    in text


def test_a_table_another_family_registers_appears_without_changing_the_catalogue(knowledge, monkeypatch):
    class Fake(Strict):
        id: str
        drugs: list[str] = Field(min_length=1)
        weight_below_kg: float
        sources: list[str]

    monkeypatch.setitem(schemas.REGISTRY, "fake_table", schemas.Table("fake_table", Fake, "list"))
    tables = dict(knowledge.rules.tables)
    tables["fake_table"] = [Fake(id="fake-rule-1", drugs=["filgotinib"], weight_below_kg=40, sources=["S001"])]
    fake = dataclasses.replace(knowledge, rules=Rules(tables))
    text = catalogue.generate(fake)
    assert "`[[fake_table]]` (1 entries)" in text
    assert "#### `fake-rule-1`" in text and "- weight < 40 kg" in text and "- **drugs:** filgotinib" in text


def test_thresholds_are_rendered_readably(knowledge):
    text = catalogue.generate(knowledge)
    assert "#### `offlabel-upadacitinib-hidradenitis`" in text
    assert "- dose: 15 mg daily" in text
    assert "- age ≥ 18" in text                         # positioning: adults only


def test_coverage_matrix_counts_entries_per_drug_and_family(knowledge):
    text = catalogue.generate(knowledge)
    families = sorted({catalogue.family_of(t) for t in schemas.load_all().values()})
    header = next(line for line in text.splitlines() if line.startswith("| drug | category |"))
    assert header.split(" | ")[2:] == [*families[:-1], families[-1] + " |"]
    row = next(line for line in text.splitlines() if line.startswith("| baricitinib (`baricitinib`)"))
    cells = dict(zip(families, [c.strip() for c in row.strip("|").split("|")[2:]]))
    evidence = sum(1 for e in knowledge.rules.offlabel_evidence if e.drug == "baricitinib")
    assert cells["offlabel"] == str(evidence + 1)      # the evidence entries + the off-label rule itself
    ruxolitinib_row = next(line for line in text.splitlines() if line.startswith("| ruxolitinib cream"))
    assert "topical" in ruxolitinib_row


def test_cli_writes_the_catalogue_to_a_file_or_stdout(tmp_path, capsys, knowledge):
    out = tmp_path / "docs" / "catalogue.md"
    assert catalogue.main(argparse.Namespace(output=str(out))) == 0
    assert out.read_text(encoding="utf-8") == catalogue.generate(knowledge)
    assert catalogue.main(argparse.Namespace(output=None)) == 0
    assert capsys.readouterr().out == catalogue.generate(knowledge)
