# Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) built from Go modules; no Docker. Included by ../Makefile,
# which defines PY (the venv python) and STAMP (the venv stamp file).
#
#   make cluster-build     build missing binaries into the cache (outside the repo)
#   make cluster           start it (idempotent) and wait until usable
#   make -s kubeconfig     print only the admin kubeconfig path
#   make cluster-status    processes, ports, health
#   make cluster-down      stop every process it started
#   make cluster-bench     cold build time, warm start time, cache size, RSS
#
# CLUSTER_DIR=/path selects another run folder (default .run/cluster).
# CPU_NODES=N simulates N CPU nodes of 400 pods (default 3); on a running cluster it adds the missing ones.

CLUSTER_PY_SCRIPT := e2e/controlplane/cluster.py
# Commands that need only the standard library also work before `make venv`.
CLUSTER_PY = $(if $(wildcard $(PY)),$(PY),python3)
CLUSTER_ARGS = $(if $(CLUSTER_DIR),--run-dir $(CLUSTER_DIR))

.PHONY: cluster-build cluster kubeconfig cluster-down cluster-status cluster-bench

cluster-build:
	$(CLUSTER_PY) $(CLUSTER_PY_SCRIPT) build

cluster: $(STAMP)
	$(PY) $(CLUSTER_PY_SCRIPT) build
	$(PY) $(CLUSTER_PY_SCRIPT) $(CLUSTER_ARGS) up $(if $(CPU_NODES),--cpu-nodes $(CPU_NODES))

kubeconfig:
	@$(CLUSTER_PY) $(CLUSTER_PY_SCRIPT) $(CLUSTER_ARGS) kubeconfig

cluster-down:
	$(CLUSTER_PY) $(CLUSTER_PY_SCRIPT) $(CLUSTER_ARGS) down

cluster-status:
	$(CLUSTER_PY) $(CLUSTER_PY_SCRIPT) $(CLUSTER_ARGS) status

cluster-bench: $(STAMP)
	$(PY) e2e/controlplane/bench.py $(CLUSTER_ARGS)
