"""Build hook: the wheel carries the knowledge (``cards/``) as package data of ``cds_service``.

``cards/`` stays at the top of the repository (the design card: clinicians edit knowledge, not code); the
wheel gets a copy at ``cds_service/cards/``, which ``Settings`` uses when the service runs from an installed
copy. An editable install (``pip install -e .``) copies nothing: it reads ``cards/`` of the checkout.
Everything else is in ``pyproject.toml``.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
KNOWLEDGE = "cards"
PACKAGE = "cds_service"


class BuildPyWithKnowledge(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return                   # editable: the checkout's cards/ is read in place
        source = HERE / KNOWLEDGE
        if not (source / "overrides.toml").is_file():
            raise SystemExit(f"the knowledge is missing: {source} (build from a checkout or its sdist)")
        target = Path(self.build_lib) / PACKAGE / KNOWLEDGE
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))


setup(cmdclass={"build_py": BuildPyWithKnowledge})
