"""Shared by tests/deploy/test_deploy_*.py: the deployment files, the lock file parser, the settings the service reads.

All offline: the deployment files are read and checked, never built or applied. The tools they need
(hadolint, kubernetes-validate, PyYAML) come from the ``deploy`` extra (``pip install -e '.[test,deploy]'``);
without them those tests skip, unless ``JAK_CDS_REQUIRE_DEPLOY_TOOLS=1`` (CI) makes a missing tool a failure.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
PACKAGE = REPO / "cds_service"

# The environments the image targets: CPython 3.11 on linux, x86_64 and aarch64.
TARGET_PYTHON = "3.11"
TARGET_ENVIRONMENTS = [
    {"python_version": "3.11", "python_full_version": "3.11.16", "implementation_name": "cpython",
     "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
     "os_name": "posix", "platform_machine": machine}
    for machine in ("x86_64", "aarch64")
]

# The command that writes each lock file, as its header records it (uv leaves out --upgrade, which
# deploy/README.md appends to take new releases).
LOCK_COMMANDS = {
    "requirements.txt": "uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes "
                        "--no-config -o deploy/requirements.txt",
    "requirements-build.txt": "uv pip compile deploy/requirements-build.in --universal --python-version 3.11 "
                              "--generate-hashes --no-config -o deploy/requirements-build.txt",
}
PROJECT_ROOT_VIA = "jak-cds (pyproject.toml)"


def require_tool(module: str | None = None, executable: str | None = None):
    """The imported module (or the executable's path); skips, or fails under JAK_CDS_REQUIRE_DEPLOY_TOOLS=1."""
    strict = os.environ.get("JAK_CDS_REQUIRE_DEPLOY_TOOLS") == "1"
    hint = "install the deploy extra: pip install -e '.[test,deploy]'"
    if module is not None:
        try:
            return __import__(module)
        except ImportError:
            if strict:
                pytest.fail(f"{module} is missing ({hint})")
            pytest.skip(f"{module} is missing ({hint})")
    assert executable is not None
    found = shutil.which(executable) or shutil.which(executable, path=str(Path(sys.executable).parent))
    if found is None:
        if strict:
            pytest.fail(f"{executable} is missing ({hint})")
        pytest.skip(f"{executable} is missing ({hint})")
    return found


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@dataclass
class LockEntry:
    line: str
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)

    @property
    def requirement(self):
        from packaging.requirements import Requirement

        return Requirement(self.line)

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version


@dataclass
class LockFile:
    header: list[str]
    entries: dict[str, LockEntry]          # canonical name -> entry


def parse_lock(path: Path) -> LockFile:
    """A ``uv pip compile --generate-hashes`` (or ``pip-compile``) output: pins, their hashes and ``# via``."""
    from packaging.utils import canonicalize_name

    header: list[str] = []
    entries: dict[str, LockEntry] = {}
    current: LockEntry | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw[0].isspace():
            if line.startswith("#"):
                header.append(line.lstrip("#").strip())
                continue
            current = LockEntry(line.rstrip("\\").strip())
            entries[canonicalize_name(current.requirement.name)] = current
        elif current is None:
            raise AssertionError(f"{path.name}: indented line before any requirement: {raw!r}")
        elif line.startswith("--hash="):
            current.hashes.append(line.removeprefix("--hash=").rstrip("\\").strip())
        elif line.startswith("# via "):
            current.via.add(line.removeprefix("# via ").strip())
        elif line == "# via":
            continue
        elif line.startswith("#   "):
            current.via.add(line.removeprefix("#   ").strip())
        elif line.startswith("#"):
            continue
        else:
            raise AssertionError(f"{path.name}: unexpected line {raw!r}")
    return LockFile(header, entries)


_SETTING_PATTERNS = (
    re.compile(r"""_(?:env|positive)\(\s*["']([A-Z][A-Z0-9_]*)["']"""),   # config.py: _env("NAME"), _positive(...)
    re.compile(r"""["']JAK_CDS_([A-Z][A-Z0-9_]*)["']"""),                 # os.environ.get("JAK_CDS_NAME")
)


def known_settings() -> set[str]:
    """Every ``JAK_CDS_*`` variable the service and its server read (from the source, wherever modules live)."""
    names: set[str] = set()
    for path in [*PACKAGE.rglob("*.py"), *DEPLOY.glob("gunicorn.conf.py")]:
        text = path.read_text()
        for pattern in _SETTING_PATTERNS:
            names.update(f"JAK_CDS_{name}" for name in pattern.findall(text))
    # sanity: the scan must find what the README documents, else the patterns went stale
    for expected in ("JAK_CDS_DATABASE_URL", "JAK_CDS_TRUSTED_CLIENTS", "JAK_CDS_AUDIT_SPOOL",
                     "JAK_CDS_KNOWLEDGE_DIR", "JAK_CDS_PATIENT_HASH_KEY", "JAK_CDS_THREADS"):
        assert expected in names, f"known_settings() no longer finds {expected}: update its patterns"
    return names


# --- servers the tests start --------------------------------------------------------------------------------
def free_port() -> int:
    """A free loopback port: from ``JAK_CDS_TEST_PORTS`` (``FIRST-LAST``, for machines where each engineer has a
    range) when set, else one the system picks."""
    import socket

    wanted = os.environ.get("JAK_CDS_TEST_PORTS")
    candidates = [0]
    if wanted:
        first, _, last = wanted.partition("-")
        candidates = list(range(int(first), int(last or first) + 1))
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in JAK_CDS_TEST_PORTS={wanted}")


def wait_for(url: str, server, timeout: float = 90.0, **kwargs):
    """The first answer of ``url`` while ``server`` (a Popen) runs, or None."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            return requests.get(url, timeout=2, **kwargs)
        except requests.RequestException:
            time.sleep(0.2)
    return None


def stop(server, grace: float = 30.0) -> int:
    """SIGTERM, then its exit status (SIGKILL after ``grace`` seconds)."""
    import signal
    import subprocess

    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        return server.wait(grace)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait(5)
