# WineMeUp developer entry points. `make help` lists them.
# Set-up is implicit: every target that needs the virtual environment, tools or packages
# installs what is missing first, and skips what is already there.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools/bin
STAMP := $(VENV)/.installed-stamp

export BENTOML_DO_NOT_TRACK := True
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export WINEMEUP_TRAIN_MODEL_STORE ?= $(BENTOML_HOME)
export PATH := $(CURDIR)/$(TOOLS):$(PATH)

PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets with a one-line description each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---- set-up ---------------------------------------------------------------------------------

$(STAMP): requirements/dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.12)")'
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip "setuptools>=70.1" wheel
# The lock carries a hash per file: pip and uv refuse anything else. pip installs uv from its
# own hashed lines of the lock, and uv the rest: the same files, in 45 s instead of pip's 2 min
# here. The project itself is a separate step (an editable install has no hash), without its
# dependencies.
	awk '/^uv==/ {p = 1} p {print} p && !/\\$$/ {exit}' requirements/dev.lock > $(VENV)/uv-only.lock
	$(BIN)/python -m pip install --quiet --quiet --require-hashes --no-deps -r $(VENV)/uv-only.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes --compile-bytecode -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --quiet --no-deps --no-build-isolation -e .
	@touch $@

.PHONY: venv
venv: $(STAMP) ## Create the virtual environment and install the pinned dev set (requirements/dev.lock)

.PHONY: system-packages
system-packages: ## Install missing Debian packages (redis-server, prometheus, wrk, chromium, unzip)
	@bash scripts/install-system-packages.sh

.PHONY: stack-packages
stack-packages: ## Install only the Debian packages the local stack uses (redis-server, prometheus)
	@bash scripts/install-system-packages.sh redis-server prometheus

.PHONY: k8s-tools
k8s-tools: ## Link helm and kubectl from PATH or install them into .tools/; checkov into .venv-checkov/
	@bash scripts/install-k8s-tools.sh

.PHONY: run-setup
run-setup: venv stack-packages ## Install only what `make run` uses: the venv, redis-server and prometheus

.PHONY: setup
setup: venv system-packages k8s-tools ## Install everything the project needs, chart tools included (idempotent)

.PHONY: data
data: venv ## Download and verify the UCI Wine Quality data (skipped when present and valid)
	$(BIN)/python -m training download

# ---- main jobs ------------------------------------------------------------------------------

.PHONY: train
train: venv ## Train the seven models into the model store and write reports/ (full mode)
	$(BIN)/python -m training train

.PHONY: train-fast
train-fast: venv ## Train the seven models quickly (few trials, one CV repeat)
	$(BIN)/python -m training train --fast

.PHONY: run
run: run-setup ## Start the local stack: train if needed, runners, Redis, router :8000, UI :8501, Prometheus :9090
	$(BIN)/python -m services.stack

.PHONY: run-inline
run-inline: run-setup ## Start the stack with every model inline in the router (no runner processes)
	WINEMEUP_STACK_PLACEMENT=inline $(BIN)/python -m services.stack

.PHONY: bentos
bentos: venv ## Build the seven runner bentos (winemeup-runner-<model>) from the model store
	bash bentos/build.sh

.PHONY: bench
bench: venv system-packages ## Benchmark the router against the FastAPI and BentoML-depends baselines (trains if needed)
	@[ -d "$(BENTOML_HOME)/models/lightgbm" ] || $(BIN)/python -m training train
	WINEMEUP_BENCH_MODEL_STORE="$(BENTOML_HOME)" $(BIN)/python -m benchmarks

# ---- tests and checks -----------------------------------------------------------------------

.PHONY: test
test: setup container-images ## Run every test: unit, integration, UI, chart checks, the chart's workloads as containers (e2e skips without a cluster)
	WINEMEUP_CONTAINERS_IMAGE_TAG=$(CONTAINERS_IMAGE_TAG) $(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Run the unit tests only
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: venv system-packages ## Run the integration tests (real runners, Redis, router)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

.PHONY: test-router
test-router: venv system-packages ## Run the router's unit and integration tests
	$(BIN)/python -m pytest tests/unit/router tests/integration/test_router_*.py $(PYTEST_ARGS)

.PHONY: test-ui
test-ui: venv system-packages ## Run the UI tests (Streamlit AppTest and headless Chromium)
	$(BIN)/python -m pytest tests/ui $(PYTEST_ARGS)

.PHONY: test-chart
test-chart: setup ## Run the Helm chart checks (lint, render, validate, checkov, promtool)
	$(BIN)/python -m pytest tests/chart $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## Lint and check formatting with ruff, type-check with mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy winemeup training services ui benchmarks tests

.PHONY: lock
lock: venv ## Re-pin requirements/*.lock from the requirements/*.in files (after changing a dependency)
	bash requirements/compile.sh

.PHONY: env-sizes
env-sizes: venv ## Build a fresh venv from each lock, check its imports, write the sizes to docs/env-sizes.md (slow)
	bash scripts/env-sizes.sh > .env-sizes.tmp
	awk 'FNR == NR {table = table $$0 "\n"; next} /env-sizes:begin/ {print; printf "%s", table; skip = 1; next} \
	     /env-sizes:end/ {skip = 0} !skip' .env-sizes.tmp docs/env-sizes.md > .env-sizes.md.tmp
	mv .env-sizes.md.tmp docs/env-sizes.md
	rm -f .env-sizes.tmp
	cat docs/env-sizes.md

.PHONY: format
format: venv ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# ---- Kubernetes -----------------------------------------------------------------------------

.PHONY: base-image
base-image: ## Make the local stand-in for python:3.11-slim-bookworm with debootstrap (no registry needed; root)
	bash scripts/make-base-image.sh

.PHONY: images
images: venv ## Build every image (router, router-models, 7 runners, UI) with docker or podman; trains first if the store is empty
	bash scripts/build-images.sh

.PHONY: images-smoke
images-smoke: venv k8s-tools ## Run each built image briefly as the chart runs it (UID, read-only root, emptyDirs) and check it serves
	$(BIN)/python scripts/smoke_images.py

.PHONY: test-images
test-images: venv ## Check that each image's lock holds what its entry point imports (fresh venvs, no engine)
	$(BIN)/python -m pytest tests/images $(PYTEST_ARGS)

.PHONY: manifests
manifests: k8s-tools ## Regenerate k8s/manifests/ from the chart's default values
	bash k8s/render-manifests.sh

.PHONY: kind-up
kind-up: ## Create the kind cluster with ingress-nginx and kube-prometheus-stack (needs docker + kind)
	bash k8s/kind-up.sh

.PHONY: kind-deploy
kind-deploy: venv k8s-tools ## Build the images, load them into kind and install the chart (train first)
	bash k8s/kind-deploy.sh

.PHONY: kind-deploy-operator
kind-deploy-operator: venv k8s-tools ## kind-deploy in operator mode: the CRDs chart, the operator image, runners.managedBy=operator
	WINEMEUP_KIND_OPERATOR=true bash k8s/kind-deploy.sh

.PHONY: helm-test
helm-test: k8s-tools ## Run the chart's `helm test` hook (predict, cache hit, /metrics) on the kind release
	helm test winemeup -n winemeup --logs

.PHONY: dev
dev: k8s-tools ## skaffold hot loop on the kind cluster (syncs Python sources)
	skaffold dev -p dev

.PHONY: e2e
e2e: venv ## Run the end-to-end tests against the kind cluster
	$(BIN)/python -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

.PHONY: e2e-operator
e2e-operator: venv ## Run the operator-mode end-to-end tests against the kind cluster (after make kind-deploy-operator)
	$(BIN)/python -m pytest tests/e2e/test_e2e_operator.py -m e2e $(PYTEST_ARGS)

# The chart's rendered workloads as podman containers (tests/containers/harness.py): images
# tagged $(CONTAINERS_IMAGE_TAG), k8s/values/containers-local.yaml, no cluster needed.
CONTAINERS_IMAGE_TAG ?= e2e

.PHONY: container-images
container-images: venv ## Build every image for tests/containers (tag CONTAINERS_IMAGE_TAG=e2e) when podman can play them here
	@if problem="$$($(BIN)/python -c 'from tests.containers.harness import engine_problem; print(engine_problem() or "")')" \
	  && [ -z "$$problem" ]; then IMAGE_TAG=$(CONTAINERS_IMAGE_TAG) bash scripts/build-images.sh; \
	else echo "container-images: not built: $$problem (tests/containers will skip, or fail under CI=true)"; fi

.PHONY: e2e-containers
e2e-containers: venv k8s-tools ## Build the images, play the chart's rendered workloads with podman kube play and test them
	IMAGE_TAG=$(CONTAINERS_IMAGE_TAG) bash scripts/build-images.sh
	WINEMEUP_CONTAINERS_IMAGE_TAG=$(CONTAINERS_IMAGE_TAG) $(BIN)/python -m pytest tests/containers -m containers $(PYTEST_ARGS)

.PHONY: bench-containers
bench-containers: venv k8s-tools system-packages ## Measure the chart's workloads as containers beside `make run` (ready time, RSS, misses/s)
	IMAGE_TAG=$(CONTAINERS_IMAGE_TAG) bash scripts/build-images.sh
	WINEMEUP_CONTAINERS_IMAGE_TAG=$(CONTAINERS_IMAGE_TAG) $(BIN)/python -m benchmarks.containers

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	bash k8s/kind-down.sh

.PHONY: clean
clean: ## Remove run state, caches and reports (keeps the venv and the model store)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache reports
