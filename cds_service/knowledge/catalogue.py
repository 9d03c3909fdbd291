"""The rule catalogue, generated from the knowledge files themselves (``jak-cds rules``).

Generic over the schema registry: every table a family registers in ``cds_service/knowledge/schemas`` is listed with
each entry's fields rendered as written in ``cards/`` (only the keys the data sets), the drugs it applies to
and its sources with labels and URLs; a coverage matrix counts the entries per drug and family. A new family
appears here without any change to this module. The output is deterministic, so the committed
``docs/rule-catalogue.md`` can be checked against it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import BaseModel

from cds_service.i18n import say
from cds_service.knowledge import Knowledge, load_knowledge, schemas

_DRUG_FIELDS = ("drugs", "drug")
_SKIP = {"id", "sources", "indicator", *_DRUG_FIELDS}


def family_of(table: schemas.Table) -> str:
    return table.model.__module__.rsplit(".", 1)[-1]


def entries_of(knowledge: Knowledge, table: schemas.Table) -> list[tuple[str, BaseModel]]:
    """(entry id, entry) in file order; a map table's entries are named ``table.key``."""
    items = getattr(knowledge.rules, table.name)
    if table.kind == "map":
        return [(f"{table.name}.{key}", value) for key, value in items.items()]
    return [(str(getattr(entry, "id", f"{table.name}[{i}]")), entry) for i, entry in enumerate(items)]


def drugs_of(entry: BaseModel, knowledge: Knowledge | None = None) -> list[str]:
    """The drugs an entry applies to: its ``drug``/``drugs`` field, or the drugs of its ``categories``."""
    found: list[str] = []
    categories = getattr(entry, "categories", None)
    if knowledge is not None and isinstance(categories, (list, tuple)):
        found += [d for d, drug in knowledge.drugs.items() if drug.category in categories]
    for name in _DRUG_FIELDS:
        value = getattr(entry, name, None)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [v for v in value if isinstance(v, str)]
    return found


_OPS = {"at_least": "≥", "at_most": "≤", "below": "<", "above": ">"}
_BOUND = re.compile(r"^(?P<what>.+?)_(?P<op>at_least|at_most|below|above)(?:_(?P<unit>[a-z0-9]+))?$")


def condition_text(key: str, value) -> str:
    """``age_at_least 65`` -> ``age ≥ 65``; ``weight_below_kg 30`` -> ``weight < 30 kg``; else ``key value``."""
    match = _BOUND.match(key)
    if match and not isinstance(value, (list, dict, BaseModel)):
        unit = f" {match['unit']}" if match["unit"] else ""
        return f"{match['what'].replace('_', ' ')} {_OPS[match['op']]} {_scalar(value)}{unit}"
    return f"{key.replace('_', ' ')} {render_value(value)}"


def _scalar(value) -> str:
    if isinstance(value, bool):
        return say("yes") if value else say("no")
    if isinstance(value, float):
        return f"{value:g}"
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def render_value(value) -> str:
    """A field value as one readable line (nested models as ``key: value; ...``)."""
    if isinstance(value, BaseModel):
        parts = [
            condition_text(k, getattr(value, k))
            for k in type(value).model_fields
            if k in value.model_fields_set and _shown(getattr(value, k))
        ]
        return "; ".join(parts) if parts else say("(always)")
    if isinstance(value, dict):
        return ", ".join(f"{k} = {render_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, BaseModel) for v in value):
            return " | ".join(render_value(v) for v in value)
        return ", ".join(render_value(v) for v in value)
    return _scalar(value)


def _shown(value) -> bool:
    return value is not None and value != [] and value != {} and value != ()


def _field_lines(entry: BaseModel) -> list[str]:
    lines = []
    for name in type(entry).model_fields:
        if name in _SKIP:
            continue
        value = getattr(entry, name)
        if name not in entry.model_fields_set and not type(entry).model_fields[name].is_required():
            continue
        if not _shown(value):
            continue
        if _BOUND.match(name) and not isinstance(value, (list, dict, BaseModel)):
            lines.append(f"- {condition_text(name, value)}")
        else:
            lines.append(f"- {name.replace('_', ' ')}: {render_value(value)}")
    return lines


def _source_lines(knowledge: Knowledge, entry: BaseModel) -> list[str]:
    out = []
    for source_id in getattr(entry, "sources", None) or []:
        source = knowledge.sources.get(source_id)
        out.append(f"  - [{source_id}] [{_scalar(source.label)}]({source.url})" if source else f"  - [{source_id}]")
    return out


def _drug_names(knowledge: Knowledge, ids: list[str]) -> str:
    return ", ".join(knowledge.drugs[d].display if d in knowledge.drugs else d for d in ids)


def generate(knowledge: Knowledge) -> str:
    registry = schemas.load_all()
    by_family: dict[str, list[schemas.Table]] = {}
    for table in registry.values():
        by_family.setdefault(family_of(table), []).append(table)
    families = sorted(by_family)
    counts = {f: sum(len(entries_of(knowledge, t)) for t in by_family[f]) for f in families}

    out = [
        say("# Rule catalogue"),
        "",
        say("Generated by `jak-cds rules` (`make rules`) from the knowledge files in `cards/`; do not edit by hand."),
        say(
            "Every table registered in `cds_service/knowledge/schemas` is listed with each entry as the data states it."
        ),
        "",
        say(
            "{entries} entries in {tables} tables of {families} families.",
            entries=sum(counts.values()),
            tables=len(registry),
            families=len(families),
        ),
        "",
        say("## Families"),
        "",
    ]
    for family in families:
        tables = ", ".join(f"`{t.name}`" for t in by_family[family])
        out.append(
            f"- [{family}](#family-{family.replace('_', '-')}): "
            + say("{count} entries ({tables})", count=counts[family], tables=tables)
        )

    out += [
        "",
        say("## Coverage: entries per drug and family"),
        "",
        say("Entries that name the drug (`drug` / `drugs`); tables without a drug field are not counted."),
        "",
    ]
    out.append(say("| drug | category | ") + " | ".join(families) + " |")
    out.append("|---|---|" + "---|" * len(families))
    for drug_id, drug in knowledge.drugs.items():
        cells = []
        for family in families:
            n = sum(
                1 for t in by_family[family] for _, e in entries_of(knowledge, t) if drug_id in drugs_of(e, knowledge)
            )
            cells.append(str(n) if n else "–")
        out.append(f"| {drug.display} (`{drug_id}`) | {drug.category} | " + " | ".join(cells) + " |")

    out += [
        "",
        say("## Drugs recognised"),
        "",
        say("`category` decides which rules apply (systemic: all families; see `cards/drugs.toml`)."),
        "",
        say("| drug | category | brands | ATC | RxNorm | SNOMED CT | approved indications (EU) |"),
        "|---|---|---|---|---|---|---|",
    ]
    for drug in knowledge.drugs.values():
        rxnorm = ", ".join(
            rx.code
            + (f" ({rx.strength_mg:g} mg)" if rx.strength_mg else "")
            + ("" if rx.verified else " " + say("unverified"))
            for rx in drug.rxnorm
        )
        indications = ", ".join(
            knowledge.indications[i].display if i in knowledge.indications else i for i in drug.indications
        )
        out.append(
            f"| {drug.display} | {drug.category} | {', '.join(drug.brands) or '–'} | "
            f"{', '.join(drug.atc) or '–'} | {rxnorm or '–'} | {', '.join(drug.snomed) or '–'} | "
            f"{indications or '–'} |"
        )
    out += [
        "",
        say("## Indications and conditions recognised"),
        "",
        say(
            "From an order's reasonCode/reasonReference or an active Condition; a condition no drug lists as "
            "approved is off-label for every drug."
        ),
        "",
        say("| id | condition | SNOMED CT | ICD-10 | approved for |"),
        "|---|---|---|---|---|",
    ]
    for ind_id, ind in knowledge.indications.items():
        approved = [d.display for d in knowledge.drugs.values() if ind_id in d.indications]
        out.append(
            f"| `{ind_id}` | {ind.display} | {', '.join(ind.snomed) or '–'} | {', '.join(ind.icd10) or '–'} | "
            f"{', '.join(approved) or say('– (off-label)')} |"
        )

    for family in families:
        out += ["", say("## Family: {family}", family=family), f'<a id="family-{family.replace("_", "-")}"></a>', ""]
        for table in by_family[family]:
            shape = "[[" + table.name + "]]" if table.kind == "list" else "[" + table.name + ".<id>]"
            entries = entries_of(knowledge, table)
            doc = (table.model.__doc__ or "").strip().splitlines()
            out += [say("### Table `{shape}` ({count} entries)", shape=shape, count=len(entries)), ""]
            if doc and not doc[0].startswith("Usage docs"):
                out += [doc[0], ""]
            if not entries:
                out += [say("(no entries)"), ""]
            for entry_id, entry in entries:
                out.append(f"#### `{entry_id}`")
                out.append("")
                drugs = drugs_of(entry, knowledge)
                if drugs:
                    out.append(say("- **drugs:** {drugs}", drugs=_drug_names(knowledge, drugs)))
                indicator = getattr(entry, "indicator", None)
                if indicator:
                    out.append(say("- **indicator:** {indicator}", indicator=indicator))
                out += _field_lines(entry)
                sources = _source_lines(knowledge, entry)
                if sources:
                    out.append(say("- **sources:**"))
                    out += sources
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(args=None) -> int:
    from cds_service import i18n
    from cds_service.config import Settings

    settings = Settings()
    knowledge = load_knowledge(settings.knowledge_dir)
    language = i18n.language_of(getattr(args, "language", None) or "en")
    if language is None:
        raise SystemExit(f"--language must be one of {', '.join(i18n.LANGUAGES)}")
    translations = i18n.load_translations(
        knowledge, settings.knowledge_dir, languages=tuple(dict.fromkeys((i18n.SOURCE_LANGUAGE, language)))
    )
    translated = translations.knowledge[language]
    assert isinstance(translated, Knowledge)  # (i18n keeps each language's knowledge as an object)
    with i18n.using(translations.catalogues[language]):
        text = generate(translated)
    output = getattr(args, "output", None)
    if output:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote the rule catalogue to {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
