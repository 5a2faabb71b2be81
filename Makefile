# The README's two commands: `make run` and `make test`.
PY ?= python3.11
, := ,
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint unit openapi npm-tools bench faults clean install install-dev ui chromium compose-cli dist

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Installs are pinned by constraints.txt: torch==2.13.0, in the build your pip index serves
# (PyPI's Linux wheel is a CUDA one; this project's machines serve the CPU build). Name the
# build to choose it: `make run TORCH_VARIANT=cpu` or `TORCH_VARIANT=cu128` (docs/gpu.md).
TORCH_VARIANT ?=
# Two distributions from this checkout (docs/packaging.md): the client `trainforge` (the
# root pyproject.toml) and `trainforge-server` (server/pyproject.toml), both editable here;
# pip takes the local server for the client's `trainforge-server[...]` extras.
PACKAGING := pyproject.toml server/pyproject.toml server/setup.py constraints.txt
EDITABLE = -e '.[$(1)]' -e './server[worker]'
# pip byte-compiles what it installs on one core (~45 s of the ~2-minute install here);
# compileall does the same on every core, leaving out the packages' own test folders
# (a fifth of the files, never imported; Python would compile one if it were). A file some
# package ships that is not Python 3 fails to compile under both, as pip's own compile step
# ignores it: so does this one.
define PIP_INSTALL
	$(if $(TORCH_VARIANT),$(PIP) install -q --index-url \
		"https://download.pytorch.org/whl/$(TORCH_VARIANT)" "$$(grep -E '^torch==' constraints.txt)")
	$(PIP) install -q --no-compile -c constraints.txt $(call EDITABLE,$(1))
	-$(BIN)/python -m compileall -qq -j 0 -x '/tests?/' $(VENV)/lib
endef
$(VENV)/.installed: $(BIN)/python $(PACKAGING)
	$(call PIP_INSTALL,worker)
	touch $@

# The dev extra holds the worker's: one pip run installs both.
$(VENV)/.installed-dev: $(BIN)/python $(PACKAGING)
	$(call PIP_INSTALL,dev)
	touch $(VENV)/.installed $@

install: $(VENV)/.installed ui
install-dev: $(VENV)/.installed-dev

# The dashboard's front-end packages (uPlot, yaml, swagger-ui, CodeMirror 6), pinned by
# api/ui/package-lock.json, into api/ui/node_modules, from where the API serves them under
# /ui/vendor/ (no CDN); the spec editor's CodeMirror is bundled into one ES module by
# esbuild (a pinned devDependency: `npm run build`) into api/ui/dist/.
UI := api/ui
$(UI)/node_modules/.installed: $(UI)/package.json $(UI)/package-lock.json
	cd $(UI) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

$(UI)/dist/codemirror/codemirror.js: $(UI)/node_modules/.installed $(UI)/editor/codemirror.js
	cd $(UI) && npm run build

ui: $(UI)/node_modules/.installed $(UI)/dist/codemirror/codemirror.js

# The UI tests (tests/e2e/test_ui.py) drive the distribution's Chromium through
# Playwright's executable_path: never a browser build of Playwright's own.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# tests/test_compose.py validates both compose files with `docker compose config` (no
# engine needed); where the docker client has no compose plugin, Debian's docker-compose.
compose-cli:
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || \
		(apt-get update && apt-get install -y docker-compose)

run: $(VENV)/.installed ui
	$(BIN)/trainforge up --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy api worker ml trainforge trainforge_server
	$(BIN)/lint-imports

# Byte-compiled modules are kept (this project's own, and pytest's rewritten tests) even
# where the environment says otherwise: each process would compile them again (~0.3 s a
# worker start here, a few seconds per pytest process).
unexport PYTHONDONTWRITEBYTECODE

# Every tier. The machine's CPU is what bounds `make test`, so each tier runs beside
# whatever leaves cores idle, in three phases:
# 1. the unit tests on every core (pytest-xdist), and beside them lint and the two tests
#    that stop and restart PostgreSQL and Redis (they mostly wait, ~110 s: about as long
#    as the unit tier and lint take together; no unit test uses either service, and
#    nothing else runs yet); their output follows the unit tier's;
# 2. the tiers that start servers and processes or use PostgreSQL and Redis, in
#    SERVER_JOBS processes, a test file kept whole in one (its module-scoped servers
#    start once), the costliest files handed out first (tests/conftest.py), and beside
#    them, in one more process, the fault tests that kill and pause workers (their own
#    database and, per test, their own queue); their output follows the server tier's;
# 3. the tests marked `alone`, with nothing beside them: they measure time (/healthz's
#    latency under a burst, a revoked key's stream closing within a second, the CPU-time
#    ratio of a 4x wider CSV header), which on two cores shared with four other test
#    processes measures the neighbours (a CI run's probe took 1.29 s against 1 s; a
#    rehearsal's ratio 6.5x against 4x alone).
# The fault runs collect tests/faults only (where the `faults` marker comes from): the
# whole suite's collection is ~10 CPU-s a process. Any part failing fails `make test`.
# Tiers: tests/conftest.py.
JOBS ?= auto
SERVER_JOBS ?= 3
test: $(VENV)/.installed-dev ui chromium compose-cli
	@logs=$$(mktemp -d); \
	echo "pytest -m 'faults and restarts' and make lint, beside the unit tier (their output follows it)"; \
	$(BIN)/pytest -q -ra -p no:cacheprovider -m "faults and restarts" tests/faults \
		> $$logs/restarts.log 2>&1 & restarts=$$!; \
	$(MAKE) -s lint > $$logs/lint.log 2>&1 & lint=$$!; \
	$(BIN)/pytest -q -ra -m unit -n $(JOBS); unit=$$?; \
	wait $$restarts; restarts=$$?; wait $$lint; lint=$$?; \
	echo "== the restart tests, exit $$restarts:"; cat $$logs/restarts.log; \
	echo "== make lint, exit $$lint:"; cat $$logs/lint.log; \
	rm -rf $$logs; test $$unit = 0 && test $$restarts = 0 && test $$lint = 0
	@logs=$$(mktemp -d); \
	echo "pytest -m 'faults and not restarts', beside the server tier (its output follows it)"; \
	$(BIN)/pytest -q -ra -p no:cacheprovider -m "faults and not restarts" tests/faults \
		> $$logs/faults.log 2>&1 & faults=$$!; \
	$(BIN)/pytest -q -ra -m "not unit and not faults and not alone" -n $(SERVER_JOBS) \
		--dist loadfile --no-loadscope-reorder; \
	server=$$?; wait $$faults; faults=$$?; \
	echo "== the fault tier (kill and pause), exit $$faults:"; cat $$logs/faults.log; \
	rm -rf $$logs; test $$server = 0 && test $$faults = 0
	@echo "pytest -m alone: the tests that measure time, with nothing beside them"
	$(BIN)/pytest -q -ra -m alone

# No subprocess, server, network, npm, database service or training over a second.
unit: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m unit -n $(JOBS)

# Line coverage of the product code: `make coverage` (every tier, as `make test`) or
# `make coverage TIER=unit`; the figures print per file, the total on the last line.
.PHONY: coverage
TIER ?=
COVERAGE := --cov=api --cov=worker --cov=ml --cov=trainforge --cov-report=term:skip-covered
coverage: $(VENV)/.installed-dev ui
	$(BIN)/pytest -q -ra $(COVERAGE) $(if $(TIER),-m $(TIER) -n $(JOBS))

# The committed contract; tests/contract/test_openapi.py fails when it drifts.
openapi: $(VENV)/.installed-dev
	$(BIN)/python -m api.openapi_dump > openapi.json.tmp
	mv openapi.json.tmp openapi.json

# openapi-typescript + typescript pinned by tests/contract/ts/package-lock.json, into
# .cache/npm-tools/ (the TypeScript contract test installs them itself when missing).
npm-tools: $(VENV)/.installed-dev
	$(BIN)/python -m tests.contract.npm_tools

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(PIP) install -q -c constraints.txt $(call EDITABLE,dev$(,)bench)
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/engine_overhead.py
	$(BIN)/python bench/metrics_overhead.py

# The fault-injection suite at a larger scale (more jobs, more kills) than in `make test`.
faults: $(VENV)/.installed-dev
	TRAINFORGE_FAULT_SCALE=3 $(BIN)/pytest -q -ra tests/faults

# Both distributions' wheels and sdists into dist/: `pip install dist/trainforge-*.whl` is
# the client (SDK + CLI); with dist/trainforge_server-*.whl (or `pip install
# 'trainforge[server]'` from an index) the API and the worker. The server's wheel and sdist
# carry the dashboard's pinned front-end files (server/setup.py, api/ui/bundle.py), taken
# from api/ui/node_modules (`make ui`): built from this tree, no network needed.
dist: $(VENV)/.installed-dev ui
	rm -rf dist build server/build
	$(BIN)/python -m build --no-isolation --sdist --wheel --outdir dist .
	$(BIN)/python -m build --no-isolation --sdist --wheel --outdir dist server

clean:
	rm -rf $(VENV) dist build server/build .trainforge .mypy_cache .ruff_cache .pytest_cache
