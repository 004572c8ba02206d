# mlplatform — developer entry points. `make dev` and `make test` are the two commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv
venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

include e2e/cluster.mk

# The kubectl built with the local control plane when there is one, else the one on PATH.
KUBECTL ?= $(shell k="$$($(CLUSTER_PY) $(CLUSTER_PY_SCRIPT) bin-dir)/kubectl"; [ -x "$$k" ] && echo "$$k" || command -v kubectl)

.PHONY: install run dev dev-down test test-unit test-e2e lint tools crds crds-check docs docs-check bench bench-memory

install: ## CRDs into the cluster of KUBECONFIG
	$(KUBECTL) apply --server-side --force-conflicts -f crds/

run: $(STAMP) ## the operator in the foreground, against KUBECONFIG
	$(VENV)/bin/mlplatform run $(if $(NAMESPACE),--namespace $(NAMESPACE)) $(if $(CONFIG),--config $(CONFIG))

dev: $(STAMP) ## local control plane with Kueue, LeaderWorkerSet, Prometheus, KEDA and storage; CRDs, operator, examples; then kubectl get ml -A
	$(PY) e2e/controlplane/cluster.py build --with-tools
	$(PY) e2e/dev.py up

dev-down: ## stop the dev operator and the local control plane
	-$(CLUSTER_PY) e2e/dev.py down
	$(CLUSTER_PY) $(CLUSTER_PY_SCRIPT) $(CLUSTER_ARGS) down

crds: $(STAMP) ## regenerate crds/ (and the chart's copy) from the API models
	$(VENV)/bin/mlplatform crds

crds-check: $(STAMP)
	$(VENV)/bin/mlplatform crds --check

docs: $(STAMP) ## regenerate docs/api.md from the API models
	$(VENV)/bin/mlplatform docs

docs-check: $(STAMP)
	$(VENV)/bin/mlplatform docs --check

lint: $(STAMP) ## ruff (configured in pyproject.toml) on the operator, the unit tests and the e2e harness
	$(VENV)/bin/ruff check operator tests e2e
	$(VENV)/bin/ruff check --extend-select RUF100 tests e2e  # every noqa there names a rule that fires

tools: $(STAMP) ## build what the `tools` tier and the e2e tests run: control plane, kueue, lws, prometheus, keda, promtool, kstatus, helm
	$(PY) e2e/controlplane/cluster.py build --with-tools
	bash charts/build-helm.sh >/dev/null

test: $(STAMP) lint crds-check docs-check tools ## lint, then unit (both tiers) and e2e tests; builds and starts what they need
	$(PY) -m pytest tests e2e -v --durations=15

test-unit: $(STAMP) ## the unit and reconciler tiers: no Go, no network, no cluster (deselects the `tools` tier)
	$(PY) -m pytest tests -q -m "not tools"

test-e2e: $(STAMP) tools
	$(PY) -m pytest e2e -v

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

BENCH_N ?= 300,1000
bench: $(BENCH_STAMP) ## BENCH_N (default 300,1000: each size in the same run) ModelDeployments through the operator vs the parallel direct-apply floor
	$(PY) e2e/controlplane/cluster.py build
	$(PY) e2e/bench_scale.py --n $(BENCH_N) $(if $(BENCH_MEMORY_N),--memory-n $(BENCH_MEMORY_N))
	$(PY) e2e/bench_operator.py

bench-memory: $(STAMP) ## operator RSS with N (default 1000) ModelDeployments, cache trimmed vs whole objects
	$(PY) e2e/controlplane/cluster.py build
	$(PY) e2e/bench_memory.py $(if $(N),--n $(N))

record-cr-states: $(STAMP) ## re-record tests/fixtures/cr_states/ (custom resource states for the Argo CD health tests)
	$(PY) e2e/controlplane/cluster.py build
	$(PY) e2e/record_cr_states.py
