"""The README a newcomer reads in ten minutes (issue 23): within its budget, and every file it points to is in
the repository (a path outside it, such as ../shared, is useless to whoever clones it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BUDGET = 12_000
# a backticked or linked repository path: at least one slash or a known file suffix
PATH = re.compile(r"(?:`|\]\()((?:\.\./|[\w.-]+/)[\w./*-]*|[\w.-]+\.(?:md|toml|py|yaml|png|json|txt))(?:`|\))")


def referenced_paths(text: str) -> set[str]:
    found = set()
    for match in PATH.finditer(text):
        path = match.group(1)
        if path.startswith(("http", ".venv/")) or "://" in path:
            continue
        found.add(path)
    return found


def test_the_readme_is_within_its_budget():
    assert len(README.read_text()) <= BUDGET


def test_every_path_the_readme_names_is_in_the_repository():
    text = README.read_text()
    paths = referenced_paths(text)
    assert "docs/architecture.md" in paths and "docs/smart-app.png" in paths   # the check reads real references
    outside = sorted(p for p in paths if p.startswith("../"))
    assert outside == []
    missing = []
    for path in paths:
        clean = path.rstrip("/")
        if "*" in clean:
            if not list(ROOT.glob(clean)):
                missing.append(path)
        elif not (ROOT / clean).exists() and not (ROOT / "cds_service" / clean).exists():
            missing.append(path)
    assert missing == [], f"README names paths that do not exist: {missing}"
