# Two commands on a fresh machine: `make serve` runs the service, `make test` runs the tests.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv

.PHONY: serve test lint bench rules lock app

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[test,deploy,dev]"
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/jak-cds serve

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

# Lint, format check and type check of the package and the benchmark (settings in pyproject.toml); .ci/run runs
# it before the tests, and .pre-commit-config.yaml runs the same tools at commit time.
LINTED = cds_service bench
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench

rules: $(VENV)/.installed
	$(VENV)/bin/jak-cds rules --output docs/rule-catalogue.md
	$(VENV)/bin/jak-cds rules --language nl --output docs/rule-catalogue.nl.md
	$(VENV)/bin/jak-cds rules --language nb --output docs/rule-catalogue.nb.md

# Pin what the image installs (deploy/requirements*.txt, hashed; see deploy/README.md)
lock: $(VENV)/.installed
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --no-config -o deploy/requirements.txt --upgrade
	$(VENV)/bin/uv pip compile deploy/requirements-build.in --universal --python-version 3.11 --generate-hashes --no-config -o deploy/requirements-build.txt --upgrade

# Rebuild the SMART monitoring app (smart-app/ -> cds_service/smart_app/static/, committed; needs node and npm).
# `make test` fails when the sources changed without this (tests/smart_app/test_smart_app.py compares BUILD-STAMP).
app:
	cd smart-app && npm ci --no-audit --no-fund && node build.mjs
