# Entry points: `make demo` (install, convert the embedded models, run the main job) and `make test`.
# Installs come from requirements.lock (`make lock` regenerates it; `make test-latest` tries the newest).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PIP_VERSION := 26.3
TORCH := torch==2.13.0
LOCK_FLAGS := --all-extras --strip-extras --no-emit-find-links --no-emit-index-url --output-file requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py requirements.lock requirements-extra.txt 2>/dev/null | sha1sum | cut -c1-12)
LATEST := .venv-latest

.PHONY: install setup demo test test-fast test-latest lock lint docs app lab clean

$(STAMP): pyproject.toml setup.py requirements.lock requirements-extra.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q pip==$(PIP_VERSION)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps -e .
	$(PIP) install -q --no-deps -r requirements-extra.txt
	$(PY) -m ipykernel install --sys-prefix --name attention-workbench --display-name "Attention workbench" >/dev/null
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

# Regenerate the lock from pyproject.toml and requirements-lock.in with the newest versions, then run
# `make test` before committing it.
lock: install
	$(VENV)/bin/pip-compile -q --upgrade $(LOCK_FLAGS) pyproject.toml requirements-lock.in

# The tests against the newest releases of every dependency (no lock), in a separate venv, so that a
# breaking release upstream is seen here before a user meets it. torch too: the newest this machine
# allows (2.14.1 on this image, from /opt/wheels); its versions land in .venv-latest/versions.txt.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q $(TORCH)
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager -e '.[lens,app,vision,dev]'
	$(LATEST)/bin/pip install -q --no-deps -r requirements-extra.txt
	$(LATEST)/bin/python -m ipykernel install --sys-prefix --name attention-workbench --display-name "Attention workbench" >/dev/null
	$(LATEST)/bin/pip list --format=freeze > $(LATEST)/versions.txt
	$(LATEST)/bin/workbench setup
	$(LATEST)/bin/python -m pytest -q -x --durations=10

lint: install
	$(VENV)/bin/ruff check workbench kernels tests app benchmarks

# Rewrite docs/results/findings.json and every generated table from docs/results/data/ (raw files).
docs: install
	$(PY) -m workbench.report docs

app: setup
	$(VENV)/bin/workbench app

# JupyterLab on the notebooks, bound to 127.0.0.1 (the kernel "Attention workbench" is this venv).
lab: setup
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(VENV) $(LATEST) results test-artifacts
