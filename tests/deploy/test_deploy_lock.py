"""The lock files the image installs (deploy/requirements.txt, deploy/requirements-build.txt) are in step with
pyproject.toml: every pin exact and hashed, every project dependency (and its extras) locked at a version its
specifier allows, nothing locked that nothing needs. Offline: names, specifiers and the ``# via`` graph are
compared, nothing is resolved again (the update command is in deploy/README.md)."""
from __future__ import annotations

import importlib.metadata
import re

import pytest

from tests.helpers.deploy import (DEPLOY, LOCK_COMMANDS, PROJECT_ROOT_VIA, TARGET_ENVIRONMENTS, parse_lock,
                                  pyproject, require_tool)

HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def packaging():
    return require_tool("packaging.requirements")


@pytest.fixture(scope="module")
def lock(packaging):
    return parse_lock(DEPLOY / "requirements.txt")


@pytest.fixture(scope="module")
def build_lock(packaging):
    return parse_lock(DEPLOY / "requirements-build.txt")


def _requirements(lines):
    from packaging.requirements import Requirement

    return [Requirement(line) for line in lines]


def _applies(requirement, extra: str = "") -> bool:
    """Does the requirement apply on any target (CPython 3.11, linux x86_64/aarch64)?"""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**env, "extra": extra}) for env in TARGET_ENVIRONMENTS)


def _locked_satisfies(lock, requirement) -> None:
    from packaging.utils import canonicalize_name

    name = canonicalize_name(requirement.name)
    assert name in lock.entries, f"{requirement} is not in the lock file: run the update command (deploy/README.md)"
    version = lock.entries[name].version
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{requirement}: the lock file pins {name}=={version}: run the update command (deploy/README.md)")


@pytest.mark.parametrize("name", sorted(LOCK_COMMANDS))
def test_every_pin_is_exact_and_hashed(name, packaging):
    entries = parse_lock(DEPLOY / name).entries
    assert entries
    for package, entry in entries.items():
        specifiers = list(entry.requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{package}: not pinned ({entry.line})"
        assert entry.hashes and all(HASH.match(h) for h in entry.hashes), f"{package}: no sha256 hash"
        assert not entry.requirement.url, f"{package}: a URL, not a package index pin"


@pytest.mark.parametrize("name", sorted(LOCK_COMMANDS))
def test_header_names_the_update_command(name, packaging):
    """The lock targets Python 3.11 (the image's) on every platform, whoever runs the command, and says how."""
    header = parse_lock(DEPLOY / name).header
    assert LOCK_COMMANDS[name] in header, f"{name}: written by another command than the documented one"
    assert _collapse(LOCK_COMMANDS[name]) in _collapse((DEPLOY / "README.md").read_text()), \
        f"deploy/README.md does not show the command that writes {name}"


def _collapse(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split())


def test_project_dependencies_are_locked(lock):
    dependencies = _requirements(pyproject()["project"]["dependencies"])
    for requirement in dependencies:
        if _applies(requirement):
            _locked_satisfies(lock, requirement)


def test_direct_pins_are_exactly_the_project_dependencies(lock):
    """A dependency dropped from pyproject.toml leaves the lock too (its ``# via`` names the project)."""
    from packaging.utils import canonicalize_name

    direct = {canonicalize_name(r.name) for r in _requirements(pyproject()["project"]["dependencies"]) if _applies(r)}
    locked_direct = {name for name, entry in lock.entries.items() if PROJECT_ROOT_VIA in entry.via}
    assert locked_direct == direct


def test_nothing_locked_that_nothing_needs(lock):
    """Every pin is wanted by the project or by another pin, and reachable from the project."""
    names = set(lock.entries)
    for name, entry in lock.entries.items():
        assert entry.via, f"{name}: no '# via' annotation (generate with annotations)"
        unknown = entry.via - names - {PROJECT_ROOT_VIA}
        assert not unknown, f"{name} is wanted by {unknown}, which are not locked: regenerate the lock"
    reached: set[str] = set()
    frontier = {name for name, entry in lock.entries.items() if PROJECT_ROOT_VIA in entry.via}
    while frontier:
        reached |= frontier
        frontier = {name for name, entry in lock.entries.items() if entry.via & reached} - reached
    assert reached == names, f"not reachable from the project: {sorted(names - reached)}"


def test_requirements_of_locked_packages_are_locked(lock):
    """The closure, from the metadata installed here where its version is the locked one: each pin's own
    requirements (and the extras the project asks for, e.g. psycopg[binary], pyjwt[crypto]) are locked too."""
    from packaging.utils import canonicalize_name

    extras: dict[str, set[str]] = {}
    for requirement in _requirements(pyproject()["project"]["dependencies"]):
        extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
    checked = set()
    for name, entry in lock.entries.items():
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if distribution.version != entry.version:
            continue
        checked.add(name)
        for requirement in _requirements(distribution.requires or []):
            if _applies(requirement) or any(_applies(requirement, extra) for extra in extras.get(name, ())):
                _locked_satisfies(lock, requirement)
    unchecked = sorted(name for name, wanted in extras.items() if wanted and name not in checked)
    if unchecked:
        pytest.skip(f"not installed here at the locked version, their extras unchecked: {unchecked}")


def test_build_lock_is_the_build_system(build_lock):
    """deploy/requirements-build.in repeats [build-system] requires; its lock pins a version they allow."""
    wanted = pyproject()["build-system"]["requires"]
    source = [line.strip() for line in (DEPLOY / "requirements-build.in").read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    assert sorted(source) == sorted(wanted)
    for requirement in _requirements(wanted):
        _locked_satisfies(build_lock, requirement)


def test_requires_python_allows_the_locked_python():
    from packaging.specifiers import SpecifierSet

    require_tool("packaging.specifiers")
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(TARGET_ENVIRONMENTS[0]["python_full_version"])
