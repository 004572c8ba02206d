"""Every fixture of the end-to-end tests: the one pytest plugin of e2e/ (test modules never import a
fixture: each import would be a definition of its own, with its own instance; helpers are in harness.py).

The session runs on its own local control plane, in E2E_CLUSTER_DIR (default .run/e2e-cluster), started
(or reused) with the same code as `make cluster`, building any missing binary first. So a dev cluster
(`make dev`, .run/cluster) and its operator keep running beside the tests, neither disturbing them nor
disturbed by them. Set ``E2E_KUBECONFIG=/path/to/kubeconfig`` to run the tests against an existing cluster
instead (nothing is started then; the tests that need the local control plane fail, they are not skipped).

Fixtures:
  kubeconfig   (session)  path of the kubeconfig the tests use
  api_client   (session)  kubernetes.client.ApiClient configured for it
  core_v1, apps_v1, batch_v1, custom (session)  typed API objects on that client
  namespace    (function) a fresh namespace, deleted (and awaited) afterwards
  wait_for     (session)  helper: wait_for(fn, timeout=60, interval=0.5, what="...")
  kubectl      (session)  harness.Kubectl for the kubeconfig
  crds         (session)  our CRDs and the Gateway API's, installed
  operator_config (session) the operator's config: copies mlplatform.dev/kwok-* annotations to pods
  operator     (session)  the operator as a subprocess, one for the session
  no_session_operator (module) the session operator paused meanwhile (a module that runs operators of its own)
  local_cluster (module)  the cluster.Cluster handle (audit log, apiserver restarts)
  kueue        (module)   Kueue started for the module and removed after it
  kueue_operator (module) an operator started once Kueue serves (session operator paused)
  lws_controller (session) the LeaderWorkerSet controller
  prometheus   (session)  a real Prometheus on 127.0.0.1 scraping every 1 s (harness.PrometheusAPI: .url, .query,
                          .value, .wait_value); started on first use, stopped at the end of a session that started it
  keda         (module)   KEDA (operator + metrics API server behind the external.metrics APIService), Available;
                          stopped and its CRDs removed at the end of a module that installed them
  model_metrics (function) the simulated model-metrics exporter (e2e/model_metrics.py) that Prometheus scrapes:
                          .set/.inc/.observe(namespace, pod_or_selector, name, value), .set_series(name, labels, v);
                          its settings cleared after each test

Every test under e2e/ gets the ``e2e`` marker (deselect with ``-m "not e2e"``). The cluster is left
running after the session so the next run reuses it; ``E2E_CLUSTER_TEARDOWN=1`` stops it at the end of a
session that started it (and the components this session started on it).
"""
from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
import yaml

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parent
# Before cluster.py is imported anywhere in the session: every cluster.Cluster() (fixtures, components,
# tests, subprocesses) then means the e2e cluster, never the dev cluster of `make dev`.
E2E_CLUSTER_DIR = Path(os.environ.get("E2E_CLUSTER_DIR") or ROOT / ".run" / "e2e-cluster").resolve()
os.environ["MLPLATFORM_CLUSTER_DIR"] = str(E2E_CLUSTER_DIR)

import harness  # noqa: E402 - it puts e2e/controlplane on sys.path and imports cluster.py: after the line above
from harness import GROUP, PLURALS, Kubectl, Operator, wait_until  # noqa: E402 - same reason

E2E_OPERATOR_LOG = ROOT / ".run" / "e2e-operator.log"


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            inside = Path(str(item.fspath)).resolve().is_relative_to(E2E_DIR)
        except (OSError, ValueError):
            inside = False
        if inside:
            item.add_marker(pytest.mark.e2e)


def _external() -> bool:
    return bool(os.environ.get("E2E_KUBECONFIG"))


def _teardown() -> bool:
    return os.environ.get("E2E_CLUSTER_TEARDOWN") == "1"


# ------------------------------------------------------------------------------------ the cluster

@pytest.fixture(scope="session")
def wait_for():
    return wait_until


@pytest.fixture(scope="session")
def kubeconfig():
    if _external():
        path = Path(os.environ["E2E_KUBECONFIG"]).expanduser().resolve()
        if not path.is_file():
            pytest.fail(f"E2E_KUBECONFIG={os.environ['E2E_KUBECONFIG']} is not a file")
        yield str(path)
        return
    import cluster  # e2e/controlplane/cluster.py

    c = cluster.Cluster(E2E_CLUSTER_DIR)
    started = not c.is_running()
    try:
        path = c.up()  # builds missing binaries, starts, waits until usable
    except cluster.ClusterError as e:
        pytest.fail(f"local control plane did not start: {e}")
    yield str(path)
    if started and _teardown():
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


@pytest.fixture(scope="session")
def custom(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


@pytest.fixture
def namespace(request, core_v1):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{stem}-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={"mlplatform.dev/e2e": "true"})))
    # The serviceaccount controller creates `default`; pods are rejected until then.
    wait_until(lambda: core_v1.read_namespaced_service_account("default", name),
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
    wait_until(gone, timeout=120, interval=0.5, what=f"namespace {name} deleted")


@pytest.fixture(scope="module")
def local_cluster(kubeconfig):
    """The local control plane, for tests that read its audit log or restart its kube-apiserver; its
    audit policy brought up to date first (a cluster started by an older checkout keeps running)."""
    if _external():
        pytest.fail("needs the local control plane (its audit log, control of its processes): unset E2E_KUBECONFIG")
    import cluster  # e2e/controlplane/cluster.py

    handle = cluster.Cluster(E2E_CLUSTER_DIR)
    policy = handle.run / "audit-policy.yaml"
    if (policy.read_text() if policy.exists() else "") != cluster.AUDIT_POLICY:
        cluster.write_audit_policy(handle.run)
        seconds = handle.restart_apiserver()
        print(f"restarted kube-apiserver with the current audit policy ({seconds:.1f}s)")
    if not handle.audit_log.exists():
        pytest.fail(f"no audit log at {handle.audit_log}")
    return handle


# ------------------------------------------------------------------------------------ the operator

@pytest.fixture(scope="session")
def kubectl(kubeconfig) -> Kubectl:
    return Kubectl(kubeconfig)


@pytest.fixture(scope="session")
def crds(kubectl):
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in PLURALS.values():
        kubectl.run("wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s")
    import gateway_api  # e2e/controlplane/gateway_api.py; also for a cluster started by an older checkout

    gateway_api.install(kubectl.binary, kubectl.env["KUBECONFIG"])


@pytest.fixture(scope="session")
def operator_config(tmp_path_factory) -> Path:
    config = tmp_path_factory.mktemp("operator") / "config.yaml"
    config.write_text(yaml.safe_dump(harness.E2E_OPERATOR_CONFIG))
    return config


_session_operator: list[Operator] = []


@pytest.fixture(scope="session")
def operator(kubeconfig, crds, operator_config):
    """One operator for the whole session (paused while a module runs operators of its own)."""
    process = Operator(kubeconfig, E2E_OPERATOR_LOG)
    process.start(operator_config)
    _session_operator.append(process)
    yield process
    _session_operator.clear()
    process.stop()


@pytest.fixture(scope="module")
def no_session_operator(operator_config):
    """Tests that run operators of their own: the shared one is stopped meanwhile (two would fight)."""
    paused = [p for p in _session_operator if p.process and p.process.poll() is None]
    for process in paused:
        process.stop()
    yield
    for process in paused:
        process.start(operator_config)


# ------------------------------------------------------------------------------------ components

@pytest.fixture(scope="module")
def kueue(kubeconfig):
    """Kueue (e2e/controlplane/components.py) for the module, removed after it: the other modules expect a
    cluster without Kueue (KueueNotInstalled)."""
    if _external():
        pytest.fail("the Kueue tests start Kueue on the local control plane (e2e/controlplane/components.py); "
                    "unset E2E_KUBECONFIG to run them")
    import components  # e2e/controlplane/components.py

    runner = components.runner("kueue", E2E_CLUSTER_DIR)
    figures = runner.up()
    print(f"\nKueue {runner.spec.version} up: {json.dumps(figures)}")
    yield runner
    runner.down(remove_crds=True)


@pytest.fixture(scope="module")
def kueue_operator(no_session_operator, kueue, kubeconfig, crds, operator_config):
    """An operator started once Kueue serves, so that no operator carries a stale "Kueue not installed"."""
    process = Operator(kubeconfig, ROOT / ".run" / "e2e-kueue-operator.log")
    process.start(operator_config)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def lws_controller(kubeconfig):
    """The LeaderWorkerSet controller: started when not running, stopped at the end of the session if this
    session started it (its CRD removed too when this session installed it: with that 17k-line schema
    installed, every later kube-apiserver start is slower)."""
    if _external():
        pytest.fail("the LWS e2e tests run the LWS controller beside the local control plane; "
                    "E2E_KUBECONFIG points elsewhere")
    import components  # e2e/controlplane/components.py

    runner = components.runner("lws", E2E_CLUSTER_DIR)
    started = not runner.running()
    crd_before = runner.crds_installed()
    figures = runner.up()
    print(f"LWS controller {runner.spec.version}: {json.dumps(figures)}")
    yield runner
    if started:
        runner.down(remove_crds=not crd_before)


# ------------------------------------------------------------------------------------ model signals

@pytest.fixture(scope="session")
def prometheus(kubeconfig):
    """A real Prometheus (e2e/controlplane/prometheus_server.py), started only when a test asks for it."""
    if _external():
        pytest.fail("the Prometheus tests run Prometheus beside the local control plane; unset E2E_KUBECONFIG")
    import components  # e2e/controlplane/components.py

    runner = components.runner("prometheus", E2E_CLUSTER_DIR)
    started = not runner.running()
    state = runner.up()
    print(f"\nPrometheus {runner.version} at {state['url']}: {json.dumps(state.get('figures', {}))}")
    yield harness.PrometheusAPI(state["url"])
    if started:
        runner.down()


@pytest.fixture(scope="module")
def keda(kubeconfig, prometheus):
    """KEDA: CRDs Established, operator ready, the external metrics APIService Available (e2e/controlplane/keda.py).
    Its operator queries the `prometheus` fixture's server (a ScaledObject's serverAddress: prometheus.url).
    Per module (10-15 s to start): a module that does not ask for KEDA sees a cluster without it, as the
    KEDANotInstalled test needs."""
    if _external():
        pytest.fail("the KEDA tests run KEDA beside the local control plane; unset E2E_KUBECONFIG")
    import components  # e2e/controlplane/components.py

    runner = components.runner("keda", E2E_CLUSTER_DIR)
    started = not runner.running()
    crds_before = runner.kubectl("get", "crd", "scaledobjects.keda.sh", check=False).returncode == 0
    state = runner.up()
    print(f"\nKEDA {runner.version}: {json.dumps(state.get('figures', {}))}")
    yield runner
    if started:
        runner.down(remove_crds=not crds_before)


@pytest.fixture(scope="session")
def model_metrics_exporter(prometheus, api_client):
    """One exporter for the session, registered with Prometheus (file service discovery) and scraped."""
    from kubernetes import client

    import components  # e2e/controlplane/components.py
    from model_metrics import ModelMetrics  # e2e/model_metrics.py

    core = client.CoreV1Api(api_client)

    def list_pods() -> list[dict]:
        rsp = core.list_pod_for_all_namespaces(_preload_content=False, _request_timeout=5)
        return json.loads(rsp.data)["items"]

    exporter = ModelMetrics(list_pods, components.runner("prometheus", E2E_CLUSTER_DIR).targets_dir).start()
    prometheus.wait_value(f'up{{job="model-metrics",instance="{exporter.address}"}}', lambda v: v == 1,
                          timeout=30, what=f"Prometheus scraping the model-metrics exporter at {exporter.address}")
    yield exporter
    exporter.stop()


@pytest.fixture
def model_metrics(model_metrics_exporter):
    yield model_metrics_exporter
    model_metrics_exporter.clear()
