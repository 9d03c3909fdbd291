"""deploy/Dockerfile and .dockerignore, offline (no Docker engine here): hadolint finds nothing, the Dockerfile
does what the image promises (pinned base, locked hashed dependencies, non-root, HEALTHCHECK on /healthz,
gunicorn through ``jak-cds serve --workers``, no secret in a layer), the build context holds only what it
copies; and the image's install steps, run here, give a server that answers: the wheel built offline carries
the knowledge and the discovery file, and once installed into a fresh virtual environment answers discovery
from a folder outside the checkout (no ``JAK_CDS_KNOWLEDGE_DIR``)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.deploy import DEPLOY, REPO, TARGET_PYTHON, free_port, known_settings, require_tool, stop, wait_for

DOCKERFILE = DEPLOY / "Dockerfile"


# --- a small Dockerfile reader ---------------------------------------------------------------------------
def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return result


def stages(items):
    """[(FROM arguments, [instructions of the stage])]."""
    out = []
    for keyword, rest in items:
        if keyword == "FROM":
            out.append((rest, []))
        elif out:
            out[-1][1].append((keyword, rest))
    return out


@pytest.fixture(scope="module")
def dockerfile():
    return instructions(DOCKERFILE.read_text())


def global_args(items) -> dict[str, str]:
    values = {}
    for keyword, rest in items:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            values[name] = value
    return values


def env_of(stage_items) -> dict[str, str]:
    values = {}
    for keyword, rest in stage_items:
        if keyword == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                values[name] = value
    return values


# --- hadolint ----------------------------------------------------------------------------------------------
def hadolint(path: Path, tmp_path: Path) -> list[dict]:
    binary = require_tool(executable="hadolint")
    # no configuration file of the machine or the user, no inline ignore pragmas, every level counts
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    run = subprocess.run([binary, "--no-color", "--format", "json", "--failure-threshold", "style",
                          "--disable-ignore-pragma", str(path)],
                         cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)
    findings = json.loads(run.stdout or "[]")
    assert run.returncode == (1 if findings else 0), run.stderr
    return findings


def test_hadolint_finds_nothing(tmp_path):
    findings = hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_does_lint(tmp_path):
    """The control: hadolint reads a Dockerfile here and reports what it should (so 'nothing' above means clean)."""
    bad = tmp_path / "Dockerfile.bad"
    bad.write_text("FROM python:latest\nRUN pip install flask\nRUN cd /tmp && ls\n")
    codes = {finding["code"] for finding in hadolint(bad, tmp_path)}
    assert {"DL3007", "DL3013", "DL3042"} <= codes


# --- what the Dockerfile does ----------------------------------------------------------------------------
def test_multi_stage_on_an_exact_slim_python(dockerfile):
    args = global_args(dockerfile)
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    assert all(source.split()[0] == "${PYTHON_IMAGE}" for source, _ in all_stages), "every stage on the same base"
    base = args["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base)
    assert match, f"{base}: not an exact Python patch release on a slim Debian (or a digest)"
    assert match.group(1) == TARGET_PYTHON, "the base's Python is the one the lock file is resolved for"
    assert all(" AS " in source.upper() for source, _ in all_stages[:-1]), "named build stages"


def test_installs_the_locked_dependencies_with_hashes_then_the_service(dockerfile):
    runs = [rest for keyword, rest in stages(dockerfile)[0][1] if keyword == "RUN"]
    text = " ".join(runs)
    for lock in ("deploy/requirements.txt", "deploy/requirements-build.txt"):
        installs = [part for part in re.split(r"&&", text) if f"-r {lock}" in part]
        assert installs and all("--require-hashes" in part and "--only-binary=:all:" in part for part in installs), lock
    # the service: built without network from the locked backend, installed without dependencies
    assert re.search(r"pip wheel --no-deps --no-build-isolation --no-index", text)
    assert re.search(r"install --no-deps --no-index /tmp/wheels/jak_cds-\*\.whl", text)
    # from the files its build reads: the build hook and the knowledge it puts into the wheel
    copied = {source for keyword, rest in stages(dockerfile)[0][1] if keyword == "COPY" for source in rest.split()[:-1]}
    assert {"pyproject.toml", "setup.py", "MANIFEST.in", "cds_service/", "cards/"} <= copied


def test_runtime_stage_is_non_root_with_a_healthcheck_and_the_production_server(dockerfile):
    _, runtime = stages(dockerfile)[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0].isdigit(), "a numeric user, so runAsNonRoot can verify it"
    (healthcheck,) = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    assert "http://127.0.0.1:8080/healthz" in healthcheck
    (entrypoint,) = [json.loads(rest) for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    (command,) = [json.loads(rest) for keyword, rest in runtime if keyword == "CMD"]
    assert entrypoint == ["jak-cds"]
    assert command[0] == "serve" and "--workers" in command and int(command[command.index("--workers") + 1]) >= 1
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert ("EXPOSE", "8080") in runtime


def test_runtime_settings_are_the_services_and_point_at_the_image(dockerfile):
    _, runtime = stages(dockerfile)[-1]
    env = env_of(runtime)
    settings = {name for name in env if name.startswith("JAK_CDS_")}
    assert settings <= known_settings(), f"not read by the service: {settings - known_settings()}"
    # the knowledge comes in the wheel: nothing copies it beside the install or points at it
    assert "JAK_CDS_KNOWLEDGE_DIR" not in env
    assert not [rest for keyword, rest in runtime if keyword == "COPY" and "cards" in rest]
    # the spool is created for the service's user
    assert env["JAK_CDS_AUDIT_SPOOL"] in " ".join(rest for keyword, rest in runtime if keyword == "RUN")


SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|_KEY\b|DATABASE_URL|CREDENTIAL", re.IGNORECASE)


def test_no_secret_in_a_layer(dockerfile):
    for keyword, rest in dockerfile:
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not SECRET_WORDS.search(rest), f"{keyword} {rest}: secrets come at run time, never in the image"
        if keyword == "COPY":
            sources = [part for part in rest.split() if not part.startswith("--")][:-1]
            assert "." not in sources and "./" not in sources, "COPY of the whole build context"
            assert not any("trusted-clients" in source or source.endswith(".env") for source in sources)


# --- .dockerignore ----------------------------------------------------------------------------------------
def _pattern(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
            continue
        char = pattern[i]
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char) if char not in "[]" else char)
        i += 1
    return re.compile(out)


def in_context(path: str, rules: list[str]) -> bool:
    """Docker's reading of .dockerignore: the last pattern matching the path or a parent of it decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    included = True
    for rule in rules:
        negate = rule.startswith("!")
        pattern = _pattern(rule.lstrip("!").strip("/"))
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            included = negate
    return included


@pytest.fixture(scope="module")
def dockerignore():
    return [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_build_context_holds_what_the_dockerfile_copies(dockerfile, dockerignore):
    assert dockerignore[0] == "*", "an allow-list: nothing enters the build context unless named"
    for keyword, rest in dockerfile:
        if keyword == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                root = REPO / source
                files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
                assert files, source
                for path in files:
                    relative = path.relative_to(REPO).as_posix()
                    if "__pycache__" in relative:
                        continue
                    assert in_context(relative, dockerignore), f"{relative} is copied but kept out of the context"


@pytest.mark.parametrize("path", [
    ".git/config", ".venv/bin/python", "jak-cds.sqlite3", "jak-cds-audit-spool/x.jsonl", ".env", "deploy/.env",
    "deploy/trusted-clients.sandbox.json", "tests/conftest.py", "bench/results.json", "fixtures/fhir/a.json",
    "cds_service/__pycache__/app.cpython-311.pyc", "deploy/k8s/secret.example.yaml",
])
def test_build_context_leaves_out(path, dockerignore):
    assert not in_context(path, dockerignore)


# --- the image's install steps, run here -------------------------------------------------------------------
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def build_wheel(tmp_path: Path, env: dict) -> Path:
    """The wheel, built as the Dockerfile builds it (offline, the installed backend) from what the image copies."""
    require_tool("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy(REPO / name, source / name)
    for folder in ("cds_service", "cards"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--wheel-dir", str(tmp_path / "wheels"), str(source)],
                   check=True, env=env, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheels").glob("jak_cds-*.whl")
    return wheel


def offline_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAK_CDS_", "PIP_", "PYTHON"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_CONFIG_FILE=os.devnull)
    return env


def fresh_venv(tmp_path: Path, wheel: Path, env: dict) -> Path:
    """A new virtual environment holding the wheel; its dependencies are this environment's (a path entry to
    our site-packages, after its own: no network, and this checkout's editable install is not activated)."""
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    str(wheel)], check=True, env=env, capture_output=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "jak_cds_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_the_wheel_carries_the_knowledge_and_the_discovery_file(tmp_path):
    """The same knowledge, byte for byte, as cards/ at the top of the repository (one source of truth)."""
    import zipfile

    wheel = build_wheel(tmp_path, offline_env())
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = {name.removeprefix("cds_service/cards/"): archive.read(name) for name in names
                    if name.startswith("cds_service/cards/") and not name.endswith("/")}
    assert "cds_service/record/services.toml" in names
    ours = {path.relative_to(REPO / "cards").as_posix(): path.read_bytes()
            for path in (REPO / "cards").rglob("*") if path.is_file()}
    assert ours and packaged == ours
    assert not any(name.startswith(("cards/", "tests/", "deploy/", "fixtures/")) for name in names)


def test_the_editable_install_reads_the_checkouts_cards():
    from cds_service.config import PACKAGED_KNOWLEDGE, Settings

    assert not PACKAGED_KNOWLEDGE.exists(), "no copy of the knowledge inside the source package"
    assert Settings().knowledge_dir == REPO / "cards"


def test_the_installed_wheel_answers_discovery_from_another_folder_with_gunicorn(tmp_path):
    """As the Dockerfile does, without the network: the wheel installed into a fresh virtual environment, then
    ``jak-cds serve --workers 2`` run from a folder outside the checkout without JAK_CDS_KNOWLEDGE_DIR: the
    knowledge and the discovery file come from the installed package, nothing from the source tree."""
    env = offline_env()
    venv = fresh_venv(tmp_path, build_wheel(tmp_path, env), env)
    workdir = tmp_path / "var"
    workdir.mkdir()
    run_env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import cds_service.config as c; print(c.__file__); print(c.Settings.from_env().knowledge_dir)"],
                           env=run_env, cwd=workdir, capture_output=True, text=True, check=True)
    module, knowledge = map(Path, where.stdout.split())
    assert module.is_relative_to(venv) and knowledge.is_relative_to(venv), "the installed copy, not the checkout"
    elsewhere = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import cds_service.config as c; print(c.Settings.from_env().knowledge_dir)"],
                               env={**run_env, "JAK_CDS_KNOWLEDGE_DIR": str(tmp_path / "k")}, cwd=workdir,
                               capture_output=True, text=True, check=True)
    assert Path(elsewhere.stdout.strip()) == tmp_path / "k", "JAK_CDS_KNOWLEDGE_DIR still points elsewhere"

    port = free_port()
    run_env.update(JAK_CDS_AUDIT_SPOOL=str(workdir / "audit-spool"),
                   JAK_CDS_DATABASE_URL=f"sqlite:///{workdir / 'jak-cds.sqlite3'}", JAK_CDS_AUTH="off")
    log = (tmp_path / "server.log").open("a+b")
    server = subprocess.Popen([str(venv / "bin" / "jak-cds"), "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "2"], cwd=workdir, env=run_env, stdout=log, stderr=log)
    try:
        answer = wait_for(f"http://127.0.0.1:{port}/cds-services", server)
        log.seek(0)
        assert answer is not None and answer.status_code == 200, log.read().decode(errors="replace")[-3000:]
        ids = {service["id"] for service in answer.json()["services"]}
        assert {"jak-order-sign", "jak-order-select", "jak-patient-view"} <= ids
        log.seek(0)
        assert b"gthread" in log.read(), "the production server (gunicorn gthread), not the built-in one"
    finally:
        code = stop(server)
        log.close()
    assert code == 0, "SIGTERM ends the server cleanly (the image's STOPSIGNAL)"
