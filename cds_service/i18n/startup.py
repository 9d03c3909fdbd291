"""Start-up: every ``say`` template found in the code, every catalogue read and checked, the knowledge translated once
per language."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cds_service.knowledge import Knowledge

from cds_service.i18n.catalogues import (
    ENGLISH,
    LANGUAGES,
    PACKAGE_DIR,
    SOURCE_LANGUAGE,
    Catalogue,
    I18nError,
    catalogue_path,
    check_catalogue,
    negotiate,
    read_catalogue,
)
from cds_service.i18n.knowledge import knowledge_texts, translate_knowledge


def code_templates(root: Path = PACKAGE_DIR) -> dict[str, str]:
    """Every ``say("...")`` template in the code -> where it is (file:line); a call whose template is not a
    literal string is listed under ``<not a literal>`` so that the check fails."""
    out: dict[str, str] = {}
    for path in sorted(Path(root).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "say(" not in source:
            continue
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "say":
                where = f"{path.relative_to(root.parent).as_posix()}:{node.lineno}"
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    out.setdefault(first.value, where)
                elif path.parent.name != "i18n":
                    out.setdefault(f"<not a literal> {where}", where)
    return out


# -- start-up -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Translations:
    """The knowledge and catalogue of each language, built and checked once at start-up."""

    default: str
    catalogues: dict[str, Catalogue]
    knowledge: dict[str, Knowledge]

    def negotiate(self, accept_language: str | None) -> str:
        return negotiate(accept_language, self.default)


def service_texts(services: dict | None) -> dict[str, str]:
    """Discovery titles and descriptions (record/services.toml) -> where."""
    out: dict[str, str] = {}
    for key, service in (services or {}).items():
        out.setdefault(service.title, f"services.{key}.title")
        out.setdefault(service.description, f"services.{key}.description")
    return out


def load_translations(
    knowledge,
    knowledge_dir: Path,
    default: str = SOURCE_LANGUAGE,
    languages: tuple[str, ...] = LANGUAGES,
    services: dict | None = None,
) -> Translations:
    """Read every catalogue, check it covers every knowledge text, discovery text and ``say`` template, and
    translate the knowledge once per language. Raises I18nError listing every problem."""
    if default not in languages:
        raise I18nError(f"JAK_CDS_LANGUAGE={default!r} is not one of {', '.join(languages)}")
    texts = {**service_texts(services), **knowledge_texts(knowledge)}
    templates = code_templates()
    problems = [
        f"say() template is not a literal string at {where}"
        for text, where in templates.items()
        if text.startswith("<not a literal>")
    ]
    catalogues = {SOURCE_LANGUAGE: ENGLISH}
    for language in languages:
        if language == SOURCE_LANGUAGE:
            continue
        catalogue = read_catalogue(catalogue_path(knowledge_dir, language), language)
        problems += check_catalogue(catalogue, texts)
        problems += check_catalogue(
            catalogue, {t: w for t, w in templates.items() if not t.startswith("<not a literal>")}
        )
        catalogues[language] = catalogue
    if problems:
        shown = problems[:40] + ([f"... and {len(problems) - 40} more"] if len(problems) > 40 else [])
        raise I18nError("translation catalogues are incomplete (cards/i18n/*.po):\n  " + "\n  ".join(shown))
    return Translations(
        default, catalogues, {lang: translate_knowledge(knowledge, cat) for lang, cat in catalogues.items()}
    )
