# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
NPROC ?= 2

.PHONY: setup test test-fast demo clean

setup: $(STAMP)

# Order matters: torch, then DeepSpeed built against it (an sdist: no build isolation), then us.
$(STAMP): constraints.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip setuptools wheel
	$(PIP) torch
	$(PIP) --no-build-isolation deepspeed
	$(PIP) -e .[dev]
	$(PY) -m mmadapt.prebuild
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q --durations=25 tests

test-fast: setup
	$(PY) -m pytest -q tests -m "not slow"

demo: setup
	bash scripts/demo.sh $(DEMO_DIR) $(NPROC)

clean:
	rm -rf runs .pytest_cache
