# The README's two commands: `make run` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint unit openapi bench clean install install-dev

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Installs are pinned by constraints.txt (torch==2.13.0 CPU build, never an unpinned CUDA one).
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/trainforge up --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy api worker ml trainforge
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q -ra

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m "not integration and not e2e and not slow"

openapi: $(VENV)/.installed-dev
	$(BIN)/python -m api.openapi_dump > openapi.json

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/engine_overhead.py

clean:
	rm -rf $(VENV) .trainforge .mypy_cache .ruff_cache .pytest_cache
