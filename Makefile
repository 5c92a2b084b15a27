# Entry points: `make demo` (install, convert the embedded models, run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-extra.txt 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: install setup demo test test-fast lint app clean

$(STAMP): pyproject.toml requirements-extra.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps -r requirements-extra.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

setup: install
	$(VENV)/bin/workbench setup

demo: setup
	$(VENV)/bin/workbench demo

test: setup
	$(PY) -m pytest -q --durations=25

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check workbench kernels tests app benchmarks

app: setup
	$(VENV)/bin/workbench app

clean:
	rm -rf $(VENV) results test-artifacts
