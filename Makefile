# Two commands on a fresh machine: `make serve` runs the service, `make test` runs the tests.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv

.PHONY: serve test bench rules

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/jak-cds serve

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench

rules: $(VENV)/.installed
	$(VENV)/bin/jak-cds rules --output docs/rule-catalogue.md
