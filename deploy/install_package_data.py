"""Copy the service's package data into an installed (non-editable) copy: ``python install_package_data.py SRC``.

Temporary, until the wheel carries its own package data (issue 22, code half): today the wheel holds
the Python modules of ``cds_service`` but not the other files beside them (``services.toml``, which
discovery reads from the package directory). This copies every file of the source package ``SRC``
(the ``cds_service`` folder of a checkout) that is not Python code into the ``cds_service`` that the
interpreter running it imports, at the same relative path, unless a file is already there. Once the
wheel carries them it copies nothing and says so, and can be dropped. The knowledge (``cards/``) is
not package data yet either: the image copies it beside the install and sets ``JAK_CDS_KNOWLEDGE_DIR``.

Used by ``deploy/Dockerfile`` and by ``tests/test_deploy_install.py`` (the same steps on this machine).
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

SKIP_SUFFIXES = {".py", ".pyc", ".pyo"}
SKIP_DIRS = {"__pycache__"}


def installed_package_dir(name: str = "cds_service") -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"install_package_data: package {name!r} is not installed for {sys.executable}")
    return Path(next(iter(spec.submodule_search_locations)))


def data_files(source: Path) -> list[Path]:
    """Files of the source package that are not Python code, relative to it."""
    return sorted(path.relative_to(source) for path in source.rglob("*")
                  if path.is_file() and path.suffix not in SKIP_SUFFIXES
                  and not SKIP_DIRS.intersection(path.relative_to(source).parts))


def install(source: Path, target: Path) -> list[Path]:
    if source.resolve() == target.resolve():
        raise SystemExit("install_package_data: the installed package is the source itself (an editable install)")
    copied = []
    for relative in data_files(source):
        destination = target / relative
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, destination)
        destination.chmod(0o644)
        copied.append(relative)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    source = Path(argv[0])
    if not (source / "__init__.py").is_file():
        raise SystemExit(f"install_package_data: {source} is not a package folder")
    target = installed_package_dir()
    copied = install(source, target)
    if copied:
        print(f"install_package_data: copied into {target}: {', '.join(map(str, copied))}")
    else:
        print(f"install_package_data: nothing to copy, the installed package in {target} has its data "
              "(this step can go)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
