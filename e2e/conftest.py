"""Fixtures for end-to-end tests against a real Kubernetes API server.

By default the session starts (or reuses) the local control plane of
e2e/controlplane/cluster.py -- the same code as `make cluster` -- building any
missing binary first. Set ``E2E_KUBECONFIG=/path/to/kubeconfig`` to run the
same tests against an existing cluster instead (nothing is started then).

Fixtures:
  kubeconfig   (session)  path of the kubeconfig the tests use
  api_client   (session)  kubernetes.client.ApiClient configured for it
  core_v1, apps_v1, batch_v1 (session)  typed API objects on that client
  namespace    (function) a fresh namespace, deleted (and awaited) afterwards
  wait_for     (session)  helper: wait_for(fn, timeout=60, interval=0.5, what="...")

Every test under e2e/ gets the ``e2e`` marker (deselect with ``-m "not e2e"``).
The local cluster is left running after the session so the next run reuses
it; set ``E2E_CLUSTER_TEARDOWN=1`` to stop it at the end if this session
started it.
"""
from __future__ import annotations

import os
import re
import sys
import time
import uuid
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(E2E_DIR / "controlplane"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            inside = Path(str(item.fspath)).resolve().is_relative_to(E2E_DIR)
        except (OSError, ValueError):
            inside = False
        if inside:
            item.add_marker(pytest.mark.e2e)


def _wait_for(fn, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    """Call fn() until it returns a truthy value; return that value or fail."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as e:  # API hiccups while polling are retried
            last_exc = e
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def wait_for():
    return _wait_for


@pytest.fixture(scope="session")
def kubeconfig():
    external = os.environ.get("E2E_KUBECONFIG")
    if external:
        path = Path(external).expanduser().resolve()
        if not path.is_file():
            pytest.fail(f"E2E_KUBECONFIG={external} is not a file")
        yield str(path)
        return
    import cluster  # e2e/controlplane/cluster.py

    c = cluster.Cluster()
    started = not c.is_running()
    try:
        path = c.up()  # builds missing binaries, starts, waits until usable
    except cluster.ClusterError as e:
        pytest.fail(f"local control plane did not start: {e}")
    yield str(path)
    if started and os.environ.get("E2E_CLUSTER_TEARDOWN") == "1":
        c.down()


@pytest.fixture(scope="session")
def api_client(kubeconfig):
    from kubernetes import config

    client = config.new_client_from_config(config_file=kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="session")
def core_v1(api_client):
    from kubernetes import client
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps_v1(api_client):
    from kubernetes import client
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="session")
def batch_v1(api_client):
    from kubernetes import client
    return client.BatchV1Api(api_client)


@pytest.fixture
def namespace(request, core_v1):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{stem}-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={"mlplatform.dev/e2e": "true"})))
    # The serviceaccount controller creates `default`; pods are rejected until then.
    _wait_for(lambda: core_v1.read_namespaced_service_account("default", name),
              timeout=30, what=f"service account default in {name}")
    yield name
    try:
        core_v1.delete_namespace(name, propagation_policy="Background")
        # Pods would otherwise get their 30s grace period; the namespace
        # controller then waits and rechecks. No container runs, so skip it.
        core_v1.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    except ApiException as e:
        if e.status != 404:
            raise

    def gone():
        try:
            core_v1.read_namespace(name)
            return False
        except ApiException as e:
            return e.status == 404
    # Wait, so resources (GPUs on nodes) are free for the next test.
    _wait_for(gone, timeout=120, interval=0.5, what=f"namespace {name} deleted")
