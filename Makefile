# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
# Any Python 3.11, 3.12 or 3.13: make test PYTHON=3.12 (a version, found as python3.12 or under pyenv), or a command
# or path (PYTHON=python3.12, PYTHON=/usr/bin/python3.13).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
override PYTHON := $(shell p='$(PYTHON)'; case "$$p" in (3.*) { python$$p -c '' 2>/dev/null && command -v python$$p; } \
	|| ls -d $$HOME/.pyenv/versions/$$p.*/bin/python 2>/dev/null | tail -1 || echo python$$p;; (*) echo "$$p";; esac)
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp names the Python it was made with, so a .venv of another Python is noticed and rebuilt.
STAMP := $(VENV)/.installed-$(PYTHON_VERSION)
# The set tested together (make lock writes it from pyproject.toml's ranges); uv installs it, several times faster
# than pip and the same set (BENCHMARKS.md, "Installing").
LOCK := requirements.lock
HOST ?= 127.0.0.1
PORT ?= 5000
# make ui serves one person from one uvicorn process, up sooner than MLflow's default 4 workers; make server keeps
# MLflow's default for a lab.
UI_WORKERS ?= 1
SERVER_PORT ?= 5001
SERVE_PORT ?= 5002
# make server's backend: the project's SQLite store, or a team's database, e.g. postgresql://user:pw@host/mlflow
BACKEND_URI ?= $(or $(CNNLAB_BACKEND_URI),sqlite:///mlruns/mlflow.db)
# Where the server keeps artifacts it proxies (clients never need this filesystem), and the Host headers it answers:
# empty keeps MLflow's default (localhost and private address ranges); a lab names its server's address(es).
ARTIFACTS ?= mlruns/artifacts
ALLOWED_HOSTS ?=
# The standard MLflow variable wins, as it does for `cnnlab.run`.
TRACKING_URI ?= $(or $(MLFLOW_TRACKING_URI),sqlite:///mlruns/mlflow.db)
ARGS ?=
# How `make ui` and `make server` start MLflow: no usage data sent, and none of MLflow 3's job runners (GenAI scorers
# and prompt jobs cnnlab never submits: 8 more processes on a SQLite store, docs/runs.md, Telemetry). Either can be
# turned back on from the environment.
MLFLOW_SERVER_ENV := MLFLOW_DISABLE_TELEMETRY=$${MLFLOW_DISABLE_TELEMETRY:-true} \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

.DEFAULT_GOAL := help
ERROR_PYTHON := PYTHON=$(PYTHON) is not a Python 3.11, 3.12 or 3.13 (found: $(or $(PYTHON_VERSION),nothing)); give one, e.g. make setup PYTHON=3.12 (python3.12 or pyenv's) or PYTHON=/path/to/python3.12

.PHONY: help setup lock docs docs-serve distclean test-matrix run sweep reproduce seeds fidelity side-by-side register bench bench-sweep bench-suite bench-distributed bench-packing bench-options bench-verdicts test test-system test-quick reliability reliability-counts lint format ui server serve clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create .venv from requirements.lock with cnnlab editable (PYTHON=python3.12: another Python, 3.11-3.13)

# A .venv without this Python's stamp (another Python's, or a set-up that failed half way) is removed and made again;
# the stamp is written last, so an interrupted set-up is never taken for a finished one.
$(STAMP): pyproject.toml $(LOCK)
	@case "$(PYTHON_VERSION)" in 3.11|3.12|3.13) ;; *) echo "Error: $(ERROR_PYTHON)" >&2; exit 1;; esac
	@if [ -d $(VENV) ] && [ ! -f $(STAMP) ]; then \
	  made=$$(ls $(VENV)/.installed-* 2>/dev/null | sed 's/.*installed-//'); \
	  echo "rebuilding $(VENV) for Python $(PYTHON_VERSION) ($(PYTHON)): it was $${made:+made by Python }$${made:-left half-built}"; \
	  rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r $(LOCK)
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

lock: setup ## Rewrite requirements.lock from pyproject.toml's ranges (keeps every version it can; --upgrade to move)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra docs --universal --python-version 3.11 -o $(LOCK) $(ARGS)

run: setup ## Train the Fashion-MNIST tutorial network (dataset=fashion model=deep); pass overrides as ARGS="..."
	$(PY) -m cnnlab.run $(ARGS)

sweep: setup ## Run (or resume) the default keras-tuner study, ~10 min on 2 cores; ARGS="sweep=<study> tuner=hyperband ..."
	$(PY) -m cnnlab.sweep $(ARGS)

reproduce: setup ## Reproduce every tutorial claim (seeds=auto: 3 to 10 seeds, until decided), writing REPRODUCTION.md; resumable (hours); ARGS="workers=2" trains 2 seeds at once
	$(PY) -m cnnlab.reproduce report_path=REPRODUCTION.md $(ARGS)

seeds: setup ## Carry a reproduction's seeds to another store: ARGS="export path=results/seeds/<claim>-<kind>.json claims=[<claim>]", then ARGS="import path=<file>" there
	$(PY) -m cnnlab.seeds $(ARGS)

fidelity: setup ## cnnlab against the plain tutorial script, 10 seeds of mnist_simple and fashion_deep; REPRODUCTION.md (~1.5 h from nothing on AVX-512, resumes)
	$(PY) benchmarks/fidelity.py $(ARGS)

side-by-side: setup ## Does reproduce workers=2 change a claim? Its seeds against one process's, paired by seed; REPRODUCTION.md (reuses stored seeds, trains what is missing)
	$(PY) benchmarks/side_by_side.py $(ARGS)

register: setup ## Register a logged model: make register ARGS="model_uri=runs:/<id>/model name=<name> [alias=champion]"
	$(PY) -m cnnlab.register $(ARGS)

bench: setup ## Plain Keras vs cnnlab (float32; bf16 where native) per network; writes BENCHMARKS.md (~30 min on 2 cores)
	$(PY) benchmarks/run.py $(ARGS)

bench-sweep: setup ## Random and Bayesian, each with and without median pruning, Hyperband: 4 studies each, time to a target (~85 min); memory over 20 trials
	$(PY) benchmarks/sweep.py $(ARGS)

bench-suite: setup ## Time make test whole (ARGS="--target test-quick": the quick suite); writes its section of BENCHMARKS.md (as long as the suite takes)
	$(PY) benchmarks/suite.py $(ARGS)

bench-distributed: setup ## Trials/hour, 1 worker x 2 threads vs 2 workers x 1 thread; updates its section of BENCHMARKS.md
	$(PY) benchmarks/distributed.py $(ARGS)

bench-packing: setup ## 1, 2 and 4 seeds packed in one model against one at a time, per network and precision (~20 min)
	$(PY) benchmarks/packing.py $(ARGS)

bench-options: setup ## oneDNN off, channels first and seeds side by side against cnnlab's defaults, per network and precision; side by side as whole runs where it pays (~45 min)
	$(PY) benchmarks/options.py $(ARGS)

bench-verdicts: setup ## Time every claim's reproduction from nothing, in a store of its own, and its GFLOP/s against the peaks (hours; ARGS="--claims ..." a few at a time, added up per machine kind; --resume <work folder>)
	$(PY) benchmarks/verdicts.py $(ARGS)

# Files in parallel, one worker per core: much of a test's time is single-threaded (interpreter and TensorFlow start-up,
# servers coming up), which a second worker overlaps. Files go out longest first (tests/conftest.py, hence
# --no-loadscope-reorder), so a long file does not run alone at the end. A third worker on 2 cores gained nothing
# measurable. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= auto
PYTEST = $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: setup ## Run the test suite but the system tests (synthetic data, no network), files in parallel (TEST_WORKERS=0: serially)
	$(PYTEST) --durations=15 $(ARGS)

# Other programs end to end (make ui and make server, mlflow models serve, Chromium on the UI, PostgreSQL, the
# benchmark scripts' short modes) and several cnnlab processes at once (the multi-host recipe across network
# namespaces, root only; the distributed launcher; four concurrent runs): more CPU than the rest of the suite, so
# kept apart from make test. .ci/run runs them after make test, so CI checks everything.
test-system: setup ## Other programs and several processes end to end: servers, browser, PostgreSQL, multi-host, benchmarks
	$(PYTEST) -m system --durations=5 $(ARGS)

# The loop between edits: tests/ marks slow what trains a network end to end, which is most of make test's time.
# (-m replaces pyproject's, so chaos and system are named again.)
test-quick: setup ## The tests not marked slow: no network trained end to end, no server (~1 min)
	$(PYTEST) -m 'not slow and not chaos and not system' $(ARGS)

# The other supported Pythons, each in its own environment (.venv-3.12, .venv-3.13) so the main .venv is kept: the
# quick suite, as .ci/run does after the whole suite on 3.11. A Python not found fails with what to give.
MATRIX ?= 3.12 3.13
test-matrix: ## The quick suite under Python 3.12 and 3.13 (MATRIX=), each in .venv-<version>
	@for version in $(MATRIX); do \
	  echo "== Python $$version"; \
	  $(MAKE) --no-print-directory test-quick PYTHON=$$version VENV=.venv-$$version || exit 1; \
	done

reliability: setup ## Fault injection: kill -9 a sweep 10 times at random points, resuming after each (~3 min)
	$(PY) -m pytest -m chaos -s $(ARGS)

reliability-counts: setup ## Rewrite RELIABILITY.md's counts of the input walk from the code (seconds; no test runs)
	$(PY) -m tests.walk_counts

lint: setup ## Check style with ruff (lint and format) and the layers of pyproject.toml's [tool.importlinter]
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: setup ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

ui: setup ## Browse runs in the MLflow UI on http://$(HOST):$(PORT) (HOST=, PORT= to change)
	@mkdir -p mlruns
	@echo "MLflow UI for $(TRACKING_URI): open http://$(HOST):$(PORT)/#/experiments?workflowType=machine_learning  (Ctrl-C to stop)"
	@echo "(that link opens MLflow's model-training view; to make this browser keep it, open http://$(HOST):$(PORT) once and pick 'Model training' in the switch at the top left)"
	$(MLFLOW_SERVER_ENV) $(VENV)/bin/mlflow ui --backend-store-uri $(TRACKING_URI) --host $(HOST) --port $(PORT) \
		--workers $(UI_WORKERS)

server: setup ## MLflow tracking server on http://HOST:SERVER_PORT over BACKEND_URI (mlruns/mlflow.db); ARTIFACTS=, ALLOWED_HOSTS=
	@mkdir -p $(ARTIFACTS)
	@echo "MLflow tracking server for $(BACKEND_URI) at http://$(HOST):$(SERVER_PORT), artifacts in $(ARTIFACTS)"
	@echo "point runs and sweeps at it: export MLFLOW_TRACKING_URI=http://$(HOST):$(SERVER_PORT)"
	$(MLFLOW_SERVER_ENV) exec $(VENV)/bin/mlflow server --backend-store-uri $(BACKEND_URI) \
		--artifacts-destination $(ARTIFACTS) --host $(HOST) --port $(SERVER_PORT) $(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS))

serve: setup ## Serve a logged model over HTTP: make serve MODEL=runs:/<run id>/model (POST raw pixels to /invocations)
	@test -n "$(MODEL)" || { echo "Error: MODEL: give the model, e.g. make serve MODEL=runs:/<run id>/model"; exit 1; }
	@echo "serving $(MODEL) at http://$(HOST):$(SERVE_PORT)/invocations  (Ctrl-C to stop)"
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_TRACKING_URI=$(TRACKING_URI) $(VENV)/bin/mlflow models serve \
		-m $(MODEL) --env-manager local --host $(HOST) --port $(SERVE_PORT)

docs: setup ## Build the documentation site into site/ (mkdocs build --strict: a broken link fails); pages regenerated first
	$(PY) docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site
	@echo "site/index.html"

docs-serve: setup ## Serve the documentation on http://127.0.0.1:8000, rebuilt on every edit (DOCS_PORT= to move)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:$(or $(DOCS_PORT),8000)

clean: ## Remove caches, Hydra outputs and the built site; keeps .venv, mlruns/ (your runs) and sweeps/ (your studies)
	rm -rf outputs multirun site .pytest_cache .ruff_cache test-output
	@echo "kept: .venv (make distclean removes it), mlruns/ (the MLflow store) and sweeps/ (study state)"

distclean: clean ## Also remove .venv and test-matrix's .venv-* (set up again when needed); still keeps mlruns/ and sweeps/
	rm -rf $(VENV) .venv-3.*
	@echo "kept: mlruns/ and sweeps/; remove them by hand to lose every run and study"
