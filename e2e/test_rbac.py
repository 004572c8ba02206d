"""The operator authenticated as the chart's ServiceAccount, not as admin, on the local control plane.

The chart's RBAC (helm template, release `mlplatform` in `mlplatform-system`: ServiceAccount
mlplatform-operator, its ClusterRole or, with watchNamespace, its Role, the lease Role) is applied; the
operator runs as `mlplatform run` with the chart's own arguments and a kubeconfig holding a token from
`kubectl create token` (harness.service_account_kubeconfig). The core scenarios must converge
with no 403 anywhere: not in the operator's log, not in the API server's audit log (which records every
request of mlplatform-system's ServiceAccounts, reads included). `kubectl auth can-i --list` for the
account shows least privilege. The teams' mlplatform-view/-edit roles reach users bound to the built-in
view/edit/admin roles.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from audit import AuditLog
from harness import (
    GROUP,
    ROOT,
    Operator,
    condition,
    feature_view_spec,
    get_cr,
    resource,
    service_account_kubeconfig,
    wait_condition,
)
from mlplatform.api import KINDS

pytestmark = pytest.mark.usefixtures("crds", "no_session_operator")

CHART = ROOT / "charts" / "mlplatform"
RELEASE, INSTALL_NAMESPACE, ACCOUNT = "mlplatform", "mlplatform-system", "mlplatform-operator"
USER = f"system:serviceaccount:{INSTALL_NAMESPACE}:{ACCOUNT}"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# The chart with quicker lease timings: a second operator of this module takes the Lease sooner.
CHART_VALUES = ("--set", "leaderElection.leaseDuration=8", "--set", "leaderElection.renewDeadline=5",
                "--set", "leaderElection.retryPeriod=1")
WAIT = 90  # seconds for a condition: the chart's leader election comes first
NEVER_VERBS = {"*", "escalate", "bind", "impersonate"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}

CPU_MODEL = {
    "model": {"uri": "s3://models/churn/v3/"},
    "runtime": {"preset": "sklearn"},
    "resources": {"cpu": "100m", "memory": "128Mi"},
}
AUTOSCALED = {**CPU_MODEL, "autoscaling": {"minReplicas": 2, "maxReplicas": 4, "targets": {"cpuUtilization": 70}}}
TRAINING = {"image": "python:3.12", "command": ["python", "train.py"], "resources": {"cpu": "1", "memory": "1Gi"},
            "output": {"uri": "s3://models/rbac"}}


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def helm() -> tuple[str, dict]:
    """charts/build-helm.sh's helm (built once, cached), or MLPLATFORM_HELM; with a private home."""
    path = os.environ.get("MLPLATFORM_HELM")
    if not path:
        out = subprocess.run(["bash", str(CHART.parent / "build-helm.sh")], capture_output=True, text=True,
                             timeout=1500)
        if out.returncode != 0:
            pytest.fail(f"charts/build-helm.sh could not build helm (exit {out.returncode}):\n{out.stderr[-3000:]}")
        path = out.stdout.strip().splitlines()[-1]
    home = ROOT / ".run" / "helm-home-rbac"
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    return path, env


def render_chart(helm, *values: str) -> list[dict]:
    path, env = helm
    out = subprocess.run([path, "template", RELEASE, str(CHART), "--namespace", INSTALL_NAMESPACE, *values],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


class ChartInstall:
    """The chart's RBAC objects (and its ServiceAccount) applied to the cluster; deleted by remove()."""

    def __init__(self, kubectl, objects: list[dict]):
        self.kubectl = kubectl
        self.objects = objects
        self.rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
        container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.args = container["args"]

    def apply(self) -> None:
        if self.kubectl.run("get", "namespace", INSTALL_NAMESPACE, check=False).returncode != 0:
            self.kubectl.run("create", "namespace", INSTALL_NAMESPACE)
        self.kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(self.rbac))

    def remove(self) -> None:
        self.kubectl.run("delete", "--ignore-not-found", "-f", "-", stdin=yaml.safe_dump_all(self.rbac), check=False)
        self.kubectl.run("delete", "lease", "-n", INSTALL_NAMESPACE, "--all", "--ignore-not-found", check=False)

    def operator_args(self) -> tuple[str, ...]:
        """The chart's `mlplatform run` arguments, less those the test process sets itself (ports, config),
        and the Lease's namespace that POD_NAMESPACE gives a pod."""
        skip = {"--bind-address", "--metrics-port", "--health-port", "--config"}
        args, i = [], 0
        while i < len(self.args):
            if self.args[i] in skip:
                i += 2
                continue
            args.append(str(self.args[i]))
            i += 1
        return (*args, "--leader-elect-namespace", INSTALL_NAMESPACE)


@pytest.fixture(scope="module")
def install_namespace(kubectl):
    yield INSTALL_NAMESPACE
    kubectl.run("delete", "namespace", INSTALL_NAMESPACE, "--ignore-not-found", "--timeout=90s", check=False)


@pytest.fixture
def chart_install(kubectl, helm, install_namespace, local_cluster):
    installs: list[ChartInstall] = []

    def install(*values: str) -> ChartInstall:
        chart = ChartInstall(kubectl, render_chart(helm, *CHART_VALUES, *values))
        chart.apply()
        installs.append(chart)
        return chart

    yield install
    for chart in installs:
        chart.remove()


@pytest.fixture
def run_as_service_account(kubeconfig, kubectl, operator_config, namespace, request):
    """Starts `mlplatform run` as the chart's ServiceAccount, with the chart's arguments; stops it afterwards
    (before the test's namespace is deleted)."""
    started: list[Operator] = []

    def start(chart: ChartInstall) -> Operator:
        stem = request.node.name[:40]
        account_kubeconfig = service_account_kubeconfig(
            kubectl, kubeconfig, INSTALL_NAMESPACE, ACCOUNT, ROOT / ".run" / f"e2e-{stem}.kubeconfig")
        process = Operator(str(account_kubeconfig), ROOT / ".run" / f"e2e-{stem}-operator.log",
                           chart.operator_args(), identity=f"rbac-{stem[:20]}")
        process.log_path.write_text("")
        process.start(operator_config)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        Path(process.kubeconfig).unlink(missing_ok=True)  # it holds a token


# ---------------------------------------------------------------- helpers

def audit_events(local_cluster, since: int, username: str = USER) -> list[dict]:
    """Every request of username the API server recorded since the byte offset (the policy records them all)."""
    return [e for e in AuditLog(local_cluster.audit_log).events(since)
            if (e.get("user") or {}).get("username") == username]


def request_kind(event: dict) -> str:
    ref = event.get("objectRef") or {}
    if not ref:
        return f"{event['verb']} {event.get('requestURI', '').split('?')[0]}"
    group = f".{ref['apiGroup']}" if ref.get("apiGroup") else ""
    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
    return f"{event['verb']} {ref.get('resource')}{group}{sub}"


def forbidden(events: list[dict]) -> list[str]:
    """Requests refused for want of permission (a 403 for a namespace being deleted is not about RBAC)."""
    refused = []
    for e in events:
        status = e.get("responseStatus") or {}
        causes = [c.get("reason") for c in (status.get("details") or {}).get("causes") or []]
        if ((e.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"
                or (status.get("code") == 403 and "NamespaceTerminating" not in causes)):
            refused.append(f"{request_kind(e)} {e.get('requestURI')}: {status.get('message', '')}")
    return refused


def log_problems(operator: Operator) -> list[str]:
    return [line for line in operator.log_path.read_text().splitlines()
            if re.search(r"\b403\b|forbidden", line, re.IGNORECASE)]


def can_i_list(kubectl_binary: str, kubeconfig: Path, namespace: str) -> tuple[str, list[dict]]:
    """`kubectl auth can-i --list` as the account itself (a SelfSubjectRulesReview with its token):
    the raw table and its rows {resources, non_resource_urls, resource_names, verbs}."""
    out = subprocess.run([kubectl_binary, "auth", "can-i", "--list", "-n", namespace],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    assert out.returncode == 0, out.stderr
    rows = []
    for line in out.stdout.splitlines()[1:]:
        match = re.match(r"^\s*(\S*)\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$", line)
        assert match, f"unparsed line of auth can-i --list: {line!r}"
        resources, urls, names, verbs = match.groups()
        rows.append({"resources": resources, "non_resource_urls": urls.split(), "resource_names": names.split(),
                     "verbs": set(verbs.split())})
    return out.stdout, rows


def check_least_privilege(rows: list[dict]) -> None:
    """No wildcards, no secrets write, no pods/exec, no escalate/bind/impersonate."""
    for row in rows:
        resource = row["resources"]
        assert "*" not in row["verbs"], f"wildcard verb: {row}"
        assert resource != "*" and not resource.startswith("*.") and not resource.endswith(".*"), \
            f"wildcard resource: {row}"
        assert not row["verbs"] & NEVER_VERBS, f"{row['verbs'] & NEVER_VERBS} on {resource}"
        name = resource.split(".", 1)[0]
        assert name not in ("pods/exec", "pods/attach", "pods/portforward", "serviceaccounts/token"), row
        if name == "secrets":
            assert not row["verbs"] & WRITE_VERBS, f"secrets write: {row}"
        assert not (name == "secrets" and row["verbs"] & {"get", "list", "watch"}), f"secrets read: {row}"


def verbs_for(rows: list[dict], resource: str) -> set[str]:
    return set().union(*[r["verbs"] for r in rows if r["resources"] == resource and not r["resource_names"]])


def can_i(kubectl, verb: str, resource: str, namespace: str, user: str, subresource: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={user}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    out = kubectl.run(*args, check=False)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {out.stdout} {out.stderr}"
    return answer == "yes"


def replicas_managers(deployment) -> set[str]:
    return {f.manager for f in deployment.metadata.managed_fields or [] if '"f:replicas"' in json.dumps(f.fields_v1)}


# ---------------------------------------------------------------- tests

def test_the_chart_service_account_runs_the_core_scenarios_without_a_403(
        chart_install, run_as_service_account, local_cluster, kubectl, custom, namespace, apps_v1, core_v1,
        batch_v1, wait_for):
    chart = chart_install()
    assert [(o["kind"], o["metadata"]["name"]) for o in chart.rbac if o["kind"].startswith("Cluster")] == [
        ("ClusterRole", "mlplatform-view"), ("ClusterRole", "mlplatform-edit"),
        ("ClusterRole", "mlplatform-operator"), ("ClusterRoleBinding", "mlplatform-operator")]
    since = local_cluster.audit_log.stat().st_size
    operator = run_as_service_account(chart)

    # A ModelDeployment to Ready, autoscaled: the HPA is created and owns the replica count. Its pods
    # start late (past the 10 s after which the operator reads a pending pod's warning events).
    kubectl.apply(resource("ModelDeployment", "scorer", AUTOSCALED, {"mlplatform.dev/kwok-start-after": "12s"}),
                  namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "scorer", "Ready", "True", timeout=WAIT)
    assert body["status"]["replicaSummary"] == "2/2"
    hpa = kubectl.run("get", "hpa", "scorer", "-n", namespace, "-o", "json")
    assert json.loads(hpa.stdout)["spec"]["minReplicas"] == 2
    deployment = apps_v1.read_namespaced_deployment("scorer", namespace)
    assert deployment.spec.replicas == 2 and "mlplatform" not in replicas_managers(deployment), \
        "replicas handed over: the operator's apply does not own them"

    # A TrainingJob to Succeeded; one waiting on a queue (Kueue's discovery document, not installed here).
    kubectl.apply(resource("TrainingJob", "train", TRAINING), namespace)
    kubectl.apply(resource("TrainingJob", "queued", {**TRAINING, "queueName": "team-a"}), namespace)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "train", "Succeeded", "True", timeout=WAIT)
    assert body["status"]["phase"] == "Succeeded" and body["status"]["artifactUri"] == "s3://models/rbac/run-1/"
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "queued", "Stalled", "True", timeout=WAIT)
    assert "Kueue is not installed" in condition(body, "Stalled")["message"]

    # A FeatureView to Ready: ConfigMap, materialization Job, CronJob, serving Deployment and Service.
    kubectl.apply(resource("FeatureView", "drivers", feature_view_spec()), namespace)
    wait_condition(wait_for, custom, "FeatureView", namespace, "drivers", "Ready", "True", timeout=WAIT)
    assert batch_v1.read_namespaced_cron_job("drivers-materialize", namespace)
    assert core_v1.read_namespaced_config_map("drivers-feast-repo", namespace)

    # A model on a claim that does not exist: the operator reads the PersistentVolumeClaim.
    kubectl.apply(resource("ModelDeployment", "on-claim", {**CPU_MODEL, "replicas": 1,
                                                           "model": {"uri": "pvc://model-store/churn/v3"}}), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "on-claim", "Ready", "False", "ClaimNotFound",
                   timeout=WAIT)

    # Drift is put back: an edited image, a deleted Service.
    kubectl.run("set", "image", "deployment/scorer", "-n", namespace, "server=evil/image:1")
    wait_for(lambda: apps_v1.read_namespaced_deployment("scorer", namespace).spec.template.spec.containers[0].image
             != "evil/image:1", timeout=30, what="image put back")
    core_v1.delete_namespaced_service("scorer", namespace)
    wait_for(lambda: core_v1.read_namespaced_service("scorer", namespace), timeout=30, what="Service re-created")

    # A child pruned: autoscaling turned off deletes the HPA (the operator's DELETE, not garbage collection).
    kubectl.apply(resource("ModelDeployment", "scorer", {**CPU_MODEL, "replicas": 2},
                           {"mlplatform.dev/kwok-start-after": "12s"}), namespace)
    wait_for(lambda: kubectl.run("get", "hpa", "scorer", "-n", namespace, check=False).returncode != 0,
             timeout=30, what="HPA pruned")
    wait_for(lambda: get_cr(custom, "ModelDeployment", namespace, "scorer")["status"]["observedGeneration"] == 2,
             what="generation 2 reconciled")
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "scorer", "Ready", "True", timeout=WAIT)

    # Events posted on the custom resources.
    events = core_v1.list_namespaced_event(namespace).items
    posted = {(e.involved_object.kind, e.reason) for e in events if e.source.component == "mlplatform-operator"}
    assert ("ModelDeployment", "AllReplicasAvailable") in posted, posted
    assert {kind for kind, _ in posted} == {"ModelDeployment", "TrainingJob", "FeatureView"}, posted

    # No 403 anywhere.
    time.sleep(1)  # the audit log is written when a request completes
    assert not log_problems(operator), "\n".join(log_problems(operator))
    requests = audit_events(local_cluster, since)
    assert not forbidden(requests), "\n".join(forbidden(requests))
    used = sorted({request_kind(e) for e in requests if (e.get("responseStatus") or {}).get("code", 200) < 400
                   or (e.get("responseStatus") or {}).get("code") == 404})
    print(f"\nrequests of {USER} (audit log), by verb and resource:\n  " + "\n  ".join(used))
    # The audit log did record this account's requests, so the check above can fail. (A server-side apply
    # is recorded as a patch, also when it creates: then it was authorized as create too.)
    for expected in ("list modeldeployments.mlplatform.dev", "patch modeldeployments.mlplatform.dev/status",
                     "patch featureviews.mlplatform.dev/status", "patch trainingjobs.mlplatform.dev/status",
                     "patch deployments.apps", "get deployments.apps", "patch horizontalpodautoscalers.autoscaling",
                     "delete horizontalpodautoscalers.autoscaling", "patch jobs.batch", "get jobs.batch",
                     "patch cronjobs.batch", "patch configmaps", "patch services", "patch poddisruptionbudgets.policy",
                     "list pods", "create events", "list events", "get persistentvolumeclaims",
                     "get /apis/kueue.x-k8s.io", "get leases.coordination.k8s.io",
                     "create leases.coordination.k8s.io", "update leases.coordination.k8s.io"):
        assert expected in used, f"{expected!r} not in the audit log: {used}"

    # Least privilege, as the account sees it (SelfSubjectRulesReview with its token).
    kubeconfig_path = Path(operator.kubeconfig)
    for where in (namespace, INSTALL_NAMESPACE):
        table, rows = can_i_list(kubectl.binary, kubeconfig_path, where)
        print(f"\n$ kubectl auth can-i --list -n {where}   # as {USER}\n{table}")
        check_least_privilege(rows)
        assert verbs_for(rows, "modeldeployments.mlplatform.dev") == {"list", "watch"}
        assert verbs_for(rows, "modeldeployments.mlplatform.dev/status") == {"patch"}
        assert verbs_for(rows, "deployments.apps") == {"get", "list", "watch", "create", "patch", "delete"}
        assert verbs_for(rows, "events") == {"list", "create"}
        assert not verbs_for(rows, "secrets") and not verbs_for(rows, "namespaces")
    leases = [r for r in rows if r["resources"] == "leases.coordination.k8s.io"]
    assert {(tuple(r["resource_names"]), frozenset(r["verbs"])) for r in leases} == {
        ((), frozenset({"create"})), (("mlplatform-operator",), frozenset({"get", "update"}))}, leases
    for verb, what, sub in (("get", "secrets", None), ("create", "secrets", None), ("create", "pods", "exec"),
                            ("update", "modeldeployments.mlplatform.dev", None),
                            ("update", "modeldeployments.mlplatform.dev", "status"),
                            ("impersonate", "serviceaccounts", None), ("bind", "clusterroles", None),
                            ("escalate", "clusterroles", None), ("list", "namespaces", None),
                            ("update", "deployments.apps", None), ("get", "pods", None)):
        assert not can_i(kubectl, verb, what, namespace, USER, sub), f"{USER} can {verb} {what} {sub or ''}"


def test_watching_one_namespace_needs_a_role_there_only(chart_install, run_as_service_account, local_cluster, kubectl,
                                                        custom, namespace, wait_for):
    chart = chart_install("--set", f"watchNamespace={namespace}")
    assert not [o for o in chart.rbac if o["kind"] == "ClusterRoleBinding"]
    assert ("--namespace", namespace) in zip(chart.args, chart.args[1:], strict=False)
    since = local_cluster.audit_log.stat().st_size
    operator = run_as_service_account(chart)

    kubectl.apply(resource("ModelDeployment", "fixed", {**CPU_MODEL, "replicas": 2}), namespace)
    kubectl.apply(resource("TrainingJob", "train", TRAINING), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "fixed", "Ready", "True", timeout=WAIT)
    wait_condition(wait_for, custom, "TrainingJob", namespace, "train", "Succeeded", "True", timeout=WAIT)
    assert kubectl.run("get", "pdb", "fixed", "-n", namespace).returncode == 0

    time.sleep(1)
    assert not log_problems(operator), "\n".join(log_problems(operator))
    requests = audit_events(local_cluster, since)
    assert not forbidden(requests), "\n".join(forbidden(requests))
    assert any(request_kind(e) == "patch modeldeployments.mlplatform.dev/status" for e in requests)
    # Every request stayed in the watched namespace or the Lease's: nothing cluster-wide.
    namespaces = {(e.get("objectRef") or {}).get("namespace") for e in requests if e.get("objectRef")}
    assert namespaces <= {namespace, INSTALL_NAMESPACE}, namespaces

    kubeconfig_path = Path(operator.kubeconfig)
    table, rows = can_i_list(kubectl.binary, kubeconfig_path, namespace)
    print(f"\n$ kubectl auth can-i --list -n {namespace}   # watchNamespace={namespace}, as {USER}\n{table}")
    check_least_privilege(rows)
    assert verbs_for(rows, "modeldeployments.mlplatform.dev") == {"list", "watch"}
    table, rows = can_i_list(kubectl.binary, kubeconfig_path, "default")
    ours = [r for r in rows if r["resources"].endswith(".mlplatform.dev") or r["resources"] in
            ("deployments.apps", "configmaps", "services", "pods", "events", "jobs.batch")]
    assert not ours, f"in another namespace the account can still: {ours}\n{table}"
    assert not can_i(kubectl, "list", "modeldeployments.mlplatform.dev", "default", USER)


def test_view_and_edit_users_get_our_kinds_through_the_built_in_roles(chart_install, kubectl, custom, namespace,
                                                                       wait_for):
    chart_install()
    viewer, editor, admin = f"viewer-{namespace}", f"editor-{namespace}", f"admin-{namespace}"
    for user, role in ((viewer, "view"), (editor, "edit"), (admin, "admin")):
        kubectl.run("create", "rolebinding", f"{role}-{user}"[:63], f"--clusterrole={role}", f"--user={user}",
                    "-n", namespace)
    kinds = [f"{kind.plural}.{GROUP}" for kind in KINDS.values()]  # every kind of the API (kinds[1]: modeldeployments)
    # The clusterrole-aggregation controller copies our rules into view/edit/admin shortly after they exist.
    wait_for(lambda: all(can_i(kubectl, "create", k, namespace, editor) for k in kinds)
             and all(can_i(kubectl, "list", k, namespace, viewer) for k in kinds)
             and can_i(kubectl, "delete", kinds[1], namespace, admin),
             timeout=60, what="mlplatform-view/-edit aggregated into view, edit and admin")
    for kind in kinds:
        for verb in ("get", "list", "watch"):
            assert can_i(kubectl, verb, kind, namespace, viewer), f"view cannot {verb} {kind}"
            assert can_i(kubectl, verb, kind, namespace, viewer, "status"), f"view cannot {verb} {kind}/status"
        for verb in ("create", "update", "patch", "delete"):
            assert not can_i(kubectl, verb, kind, namespace, viewer), f"view can {verb} {kind}"
            assert can_i(kubectl, verb, kind, namespace, editor), f"edit cannot {verb} {kind}"
            assert can_i(kubectl, verb, kind, namespace, admin), f"admin cannot {verb} {kind}"
        for verb in ("update", "patch"):  # status is the operator's
            assert not can_i(kubectl, verb, kind, namespace, editor, "status"), f"edit can {verb} {kind}/status"
        assert not can_i(kubectl, "list", kind, "default", editor), "a RoleBinding grants its namespace only"

    # For real: edit creates one, view reads it and cannot change it.
    model = resource("ModelDeployment", "by-editor", {**CPU_MODEL, "replicas": 1})
    kubectl.run("apply", "-n", namespace, f"--as={editor}", "-f", "-", stdin=yaml.safe_dump(model))
    got = kubectl.run("get", "modeldeployment", "by-editor", "-n", namespace, f"--as={viewer}", "-o", "name")
    assert got.stdout.strip() == f"modeldeployment.{GROUP}/by-editor"
    refused = kubectl.run("delete", "modeldeployment", "by-editor", "-n", namespace, f"--as={viewer}", check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
