"""Install manifests: the kustomize base in manifests/ and the Helm chart in charts/mlplatform/.

No cluster: every object is validated against the Kubernetes schemas (kubernetes-validate, strict),
the operator's ClusterRole (or, watching one namespace, its Role there) is checked to grant exactly
what the operator calls, the leader-election Role against what kubernetes.leaderelection calls, the
mlplatform-view/-edit roles against the built-in roles they aggregate into, and the Deployment's
command line is parsed with the operator's own CLI parser. Both installs run two replicas with leader
election (HA); the chart can run one without.
The chart is rendered with a real `helm`, built from its Go module by charts/build-helm.sh (or given as
MLPLATFORM_HELM), and kustomize is the kubectl built with the local control plane: those tests are in the
`tools` tier (tests/conftest.py), which `make test` runs after building them; without them these tests fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlplatform.api import GROUP, KINDS
from mlplatform.cli import build_parser
from mlplatform.config import OperatorConfig, load_config
from mlplatform.operator_main import WATCHED
from mlplatform.runtime.kube import CHILD_KINDS, SHARED_KINDS
from mlplatform.runtime.leader import LeaseSettings

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
CHART = REPO / "charts" / "mlplatform"
K8S_VERSION = "1.36.0"
NAMESPACE = "mlplatform-system"
RUN_AS_USER = 65532

CRUD = {"get", "list", "watch", "create", "update", "patch", "delete"}
PLURALS = sorted(kind.plural for kind in KINDS.values())



def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _operator_rules() -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> exactly the verbs the operator's requests are authorized as, from the code:
    operator/mlplatform/runtime/kube.py (the only module that calls the API server) and operator_main.WATCHED."""
    rules: dict[tuple[str, str], set[str]] = {}

    def grant(group: str, resource: str, *verbs: str) -> None:
        rules.setdefault((group, resource), set()).update(verbs)

    for watched in WATCHED:  # informer.py: list pages, then watch
        grant(_group(watched.api_version), watched.plural, "list", "watch")
    for (api_version, _), plural in CHILD_KINDS.items():
        # Kube.apply / hand_over: server-side apply is a PATCH, authorized as create too when it creates.
        # Kube.delete: prune.
        grant(_group(api_version), plural, "create", "patch", "delete")
    # Kube.get, through controllers.base.live_child: the absence of a Deployment or Job from the cache is
    # confirmed before acting on it (modeldeployment.py, trainingjob.py).
    grant("apps", "deployments", "get")
    grant("leaderworkerset.x-k8s.io", "leaderworkersets", "get")  # the same for a multi-node ModelDeployment
    grant("batch", "jobs", "get")
    for plural in PLURALS:
        grant(GROUP, f"{plural}/status", "patch")  # Kube.patch_status: merge patch of /status
        # Not a request: children carry ownerReferences with blockOwnerDeletion, which the
        # OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) allows only with this.
        grant(GROUP, f"{plural}/finalizers", "update")
    grant("", "persistentvolumeclaims", "get")  # Kube.get_pvc
    for (api_version, _), plural in SHARED_KINDS.items():  # model.cache: Kube.apply and Kube.get
        grant(_group(api_version), plural, "get", "create", "patch")
    grant("kueue.x-k8s.io", "localqueues", "get")  # Kube.local_queue_exists (Kueue's discovery: system:discovery)
    grant("kueue.x-k8s.io", "workloads", "list")  # Kube.workload_of_job: a queued run's Workload
    grant("", "events", "list", "create")  # Kube.warning_events, Kube.post_event (core/v1 only)
    return rules


# (apiGroup, resource) -> the verbs the operator's role grants: these, no more, no fewer.
OPERATOR_RULES = _operator_rules()
# Never granted, whatever else changes: the spec of a custom resource is the user's; secrets, exec,
# namespaces and the events.k8s.io API are none of the operator's business; and nothing that edits
# RBAC or acts as someone else.
FORBIDDEN_RULES: dict[tuple[str, str], set[str]] = {
    **{(GROUP, plural): {"create", "update", "patch", "delete", "deletecollection"} for plural in PLURALS},
    **{(GROUP, f"{plural}/status"): {"get", "update"} for plural in PLURALS},
    ("", "secrets"): CRUD,
    ("", "pods"): {"get", "create", "update", "patch", "delete"},
    ("", "pods/exec"): CRUD,
    ("", "namespaces"): CRUD,
    ("", "events"): {"get", "watch", "update", "patch", "delete"},
    ("events.k8s.io", "events"): CRUD,
    # The leader-election Lease: a namespaced Role in the operator's namespace, never cluster-wide.
    ("coordination.k8s.io", "leases"): CRUD,
    **{(group, plural): {"update"} for (group, plural) in
       [(_group(api_version), plural) for (api_version, _), plural in CHILD_KINDS.items()]},
}
NEVER_VERBS = {"escalate", "bind", "impersonate", "deletecollection"}
# The teams' roles, aggregated into the built-in ones (label -> built-in role).
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
VIEW_ROLE, EDIT_ROLE = "mlplatform-view", "mlplatform-edit"
READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch", "delete", "deletecollection"}
VIEW_RULES = {**{(GROUP, plural): READ for plural in PLURALS},
              **{(GROUP, f"{plural}/status"): READ for plural in PLURALS}}
EDIT_RULES = {**{(GROUP, plural): READ | WRITE for plural in PLURALS},
              **{(GROUP, f"{plural}/status"): READ for plural in PLURALS}}
# kubernetes.leaderelection's LeaseLock: read_namespaced_lease, create_namespaced_lease, replace_namespaced_lease.
LEASE = ("coordination.k8s.io", "leases")
LEASE_VERBS = {"get", "create", "update"}
DOWNWARD_API_ENV = {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
HOSTNAME = "kubernetes.io/hostname"


# ---------------------------------------------------------------- helpers

def load_stream(text: str, source: str) -> list[tuple[str, dict]]:
    return [(f"{source}#{i + 1}", doc) for i, doc in enumerate(yaml.safe_load_all(text)) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def manifest_objects() -> list[tuple[str, dict]]:
    objects = []
    for path in manifest_files():
        objects += load_stream(path.read_text(), f"manifests/{path.name}")
    return objects


def only(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def validate_object(obj: dict) -> None:
    api_group = obj["apiVersion"].rpartition("/")[0]
    if api_group == "monitoring.coreos.com":  # a Prometheus Operator CRD: no schema in kubernetes-validate
        assert obj["kind"] == "ServiceMonitor"
        return
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def granted(role: dict) -> dict[tuple[str, str], set[str]]:
    verbs_by_resource: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule, rule
        assert "resourceNames" not in rule, f"rule restricted to names would not cover the operator: {rule}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
            assert not any("*" in item for item in rule[field]), f"wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs_by_resource.setdefault((group, resource), set()).update(rule["verbs"])
    return verbs_by_resource


def check_operator_role(role: dict) -> None:
    """The operator's ClusterRole (or Role) grants exactly OPERATOR_RULES: what it calls, nothing else."""
    what = f"{role['kind']} {role['metadata']['name']}"
    have = granted(role)
    extra = {key: sorted(have.get(key, set()) & verbs) for key, verbs in FORBIDDEN_RULES.items()
             if have.get(key, set()) & verbs}
    assert not extra, f"{what} grants what the operator must never have: {extra}"
    never = {key: sorted(verbs & NEVER_VERBS) for key, verbs in have.items() if verbs & NEVER_VERBS}
    assert not never, f"{what} grants {never}"
    missing = {key: sorted(verbs - have.get(key, set())) for key, verbs in OPERATOR_RULES.items()
               if verbs - have.get(key, set())}
    assert not missing, f"{what} lacks {missing}"
    unused = {key: sorted(verbs - OPERATOR_RULES.get(key, set())) for key, verbs in have.items()
              if verbs - OPERATOR_RULES.get(key, set())}
    assert not unused, f"{what} grants verbs the operator does not use: {unused}"


def check_aggregated_roles(objects: list[dict], expected: bool = True) -> None:
    """mlplatform-view (into view) and mlplatform-edit (into edit and admin): the teams' access to the kinds."""
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"
             and any(key.startswith(AGGREGATE_TO) for key in o["metadata"].get("labels", {}))}
    if not expected:
        assert not roles, f"aggregated roles rendered: {sorted(roles)}"
        return
    assert sorted(roles) == [EDIT_ROLE, VIEW_ROLE]
    for name, rules, into in ((VIEW_ROLE, VIEW_RULES, {"view"}), (EDIT_ROLE, EDIT_RULES, {"edit", "admin"})):
        role = roles[name]
        labels = {k.removeprefix(AGGREGATE_TO): v for k, v in role["metadata"]["labels"].items()
                  if k.startswith(AGGREGATE_TO)}
        assert labels == {target: "true" for target in into}, f"{name} aggregates into {labels}"
        assert "aggregationRule" not in role
        assert granted(role) == rules, f"{name}: {granted(role)}"
    bound = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")
             and o["roleRef"]["name"] in roles]
    assert not bound, "the aggregated roles reach users through the built-in roles, not bindings of ours"


def operator_binding(objects: list[dict], account: dict, namespace: str, watch_namespace: str | None) -> dict:
    """The binding of the operator's account to its rules, and the role it binds: a ClusterRoleBinding to a
    ClusterRole, or with a watched namespace a RoleBinding to a Role in that namespace (nothing cluster-wide).
    Returns that role, after checking the binding and that nothing else is bound to the account but the
    lease Role."""
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")
                and subject in o.get("subjects", [])]
    assert all(o["subjects"] == [subject] for o in bindings), "bindings of the operator name only its account"
    lease_roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in objects if r["kind"] == "Role"
                   and r["rules"] and all(rule["resources"] == [LEASE[1]] for rule in r["rules"])}
    ours = [b for b in bindings if (b["metadata"].get("namespace"), b["roleRef"]["name"]) not in lease_roles]
    assert len(ours) == 1, f"expected one binding of the operator's rules, found {[b['metadata'] for b in ours]}"
    [binding] = ours
    if watch_namespace is None:
        assert binding["kind"] == "ClusterRoleBinding"
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"}
        role = only([o for o in objects if o["kind"] == "ClusterRole"
                     and o["metadata"]["name"] == binding["roleRef"]["name"]], "ClusterRole")
    else:
        assert binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] == watch_namespace
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role"}
        role = only([o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == watch_namespace
                     and o["metadata"]["name"] == binding["roleRef"]["name"]], "Role")
        cluster_wide = [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"]
        assert not cluster_wide, f"watching one namespace, yet cluster-wide bindings: {cluster_wide}"
        operator_cluster_roles = [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"
                                  and o["metadata"]["name"] not in (VIEW_ROLE, EDIT_ROLE)]
        assert not operator_cluster_roles, f"watching one namespace, yet ClusterRoles {operator_cluster_roles}"
    assert binding["roleRef"] == {**ref, "name": role["metadata"]["name"]}
    check_operator_role(role)
    return role


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"probe port {port!r} is not a container port name"
    return named[port]


def check_lease_role(objects: list[dict], args, account: dict, namespace: str) -> None:
    """The Role grants get/create/update on the Lease the operator campaigns for, and nothing else."""
    role = only([o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == namespace
                 and o["metadata"]["name"].endswith("-leader-election")], "Role")
    binding = only([o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["kind"] == "Role"
                    and o["roleRef"]["name"] == role["metadata"]["name"]
                    and o["metadata"]["namespace"] == namespace], "RoleBinding")
    assert role["metadata"]["namespace"] == namespace == binding["metadata"]["namespace"]
    verbs: set[str] = set()
    named_verbs: set[str] = set()  # verbs that reach the lease by name: unrestricted, or restricted to it
    for rule in role["rules"]:
        assert (rule["apiGroups"], rule["resources"]) == ([LEASE[0]], [LEASE[1]]), f"not the lease: {rule}"
        assert "nonResourceURLs" not in rule, rule
        verbs |= set(rule["verbs"])
        names = rule.get("resourceNames")
        if names is not None:
            assert names == [args.leader_elect_lease_name], f"resourceNames other than the lease: {rule}"
            assert "create" not in rule["verbs"], "create cannot be restricted by name: it would be refused"
        named_verbs |= set(rule["verbs"])
    assert verbs == LEASE_VERBS, f"lease Role grants {sorted(verbs)}; the operator needs exactly {sorted(LEASE_VERBS)}"
    assert {"get", "update"} <= named_verbs
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": namespace}]


def hostname_spread(pod: dict, template_labels: dict) -> str | None:
    """How a pod anti-affinity by hostname keeps the replicas apart: "preferred", "required", or None."""
    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    preferred = anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    terms = [("preferred", t["podAffinityTerm"]) for t in preferred]
    terms += [("required", t) for t in anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])]
    for kind, term in terms:
        selector = term["labelSelector"]["matchLabels"]
        if term["topologyKey"] == HOSTNAME and selector and selector.items() <= template_labels.items():
            return kind
    return None


def check_install(objects: list[dict], namespace: str = NAMESPACE, *, leader_election: bool = True,
                  replicas: int | None = None):
    """The checks shared by the kustomize base and the chart; returns (parsed args, Deployment, ConfigMap).

    leader_election: the HA shape (default): `replicas` (2) pods, --leader-elect, RollingUpdate without
    unavailability, the lease Role, a PodDisruptionBudget and spread over nodes when replicas > 1.
    Otherwise one replica, Recreate, no --leader-elect, no lease Role and no PodDisruptionBudget.
    """
    replicas = (2 if leader_election else 1) if replicas is None else replicas
    deployment = only(objects, "Deployment")
    account = only(objects, "ServiceAccount")
    service = only(objects, "Service")
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for obj in (deployment, account, service, *config_maps.values()):
        assert obj["metadata"]["namespace"] == namespace, obj["metadata"]

    spec = deployment["spec"]
    assert spec["replicas"] == replicas, f"replicas: {spec['replicas']}, expected {replicas}"
    if leader_election:
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}, \
            "the lease keeps one reconciler: start the new pod before stopping an old one"
    else:
        assert replicas == 1, "without leader election every replica would reconcile"
        assert spec["strategy"] == {"type": "Recreate"}, "never two operators at once during a rollout"
    pod = spec["template"]["spec"]
    template_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/name"] == "mlplatform-operator"
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod.get("automountServiceAccountToken", True) is True, "in-cluster login needs the token"
    [container] = pod["containers"]

    # The command line, as the operator's own parser reads it.
    command = container["command"] + container.get("args", [])
    assert command[:2] == ["mlplatform", "run"], command
    args = build_parser().parse_args(command[1:])
    assert args.func.__name__ == "cmd_run"
    assert args.bind_address == "0.0.0.0", "in a pod the endpoints must listen on all addresses"
    # RBAC: all namespaces -> ClusterRole; --namespace -> a Role there, nothing cluster-wide.
    operator_binding(objects, account, namespace, args.namespace)
    check_aggregated_roles(objects)

    # Leader election: the identity and the Lease's namespace come from the downward API.
    env = {e["name"]: e for e in container.get("env", [])}
    for name, field in DOWNWARD_API_ENV.items():
        assert env.get(name, {}).get("valueFrom") == {"fieldRef": {"fieldPath": field}}, \
            f"env {name} must come from the downward API ({field}): {env.get(name)}"
    assert args.leader_elect is leader_election, f"--leader-elect: {args.leader_elect}, expected {leader_election}"
    roles = [o for o in objects if o["kind"] in ("Role", "RoleBinding")
             and o["metadata"]["name"].endswith("-leader-election")]
    if leader_election:
        assert args.leader_elect_namespace in (None, namespace), "the Lease is in the operator's namespace"
        assert LeaseSettings(args.leader_elect_lease_name, namespace, args.leader_elect_lease_duration,
                             args.leader_elect_renew_deadline, args.leader_elect_retry_period).problems() == []
        check_lease_role(objects, args, account, namespace)
    else:
        assert not roles, "no lease, no lease Role"

    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    if replicas > 1:
        assert len(budgets) == 1, f"{replicas} replicas: expected one PodDisruptionBudget, found {len(budgets)}"
        [budget] = budgets
        assert budget["apiVersion"] == "policy/v1"
        assert budget["metadata"]["namespace"] == namespace
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector and selector.items() <= template_labels.items(), "the PDB selects the operator pods"
        assert selector.items() >= spec["selector"]["matchLabels"].items(), "and only them"
        limit = {k: budget["spec"][k] for k in ("maxUnavailable", "minAvailable") if k in budget["spec"]}
        assert limit in ({"maxUnavailable": 1}, {"minAvailable": 1}), limit
        assert hostname_spread(pod, template_labels), "replicas spread over nodes"
    else:
        assert not budgets, "a budget for one pod protects nothing"

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": args.metrics_port, "health": args.health_port}
    # /healthz: workers not stuck, informers alive. /readyz: caches synced (standbys too).
    for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert _port_number(container, probe["port"]) == args.health_port, probe_name

    # Restricted Pod Security Standard.
    pod_sc, sc = pod.get("securityContext", {}), container["securityContext"]
    effective = {**pod_sc, **sc}
    assert effective["runAsNonRoot"] is True
    assert effective["runAsUser"] == RUN_AS_USER
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")
    assert sc["readOnlyRootFilesystem"] is True
    assert not sc.get("privileged")
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")

    resources = container["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert resources["limits"] == {"memory": "512Mi"}

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]], "/tmp must be writable with a read-only root"
    # --config points into a mounted ConfigMap that exists and holds a valid operator config.
    assert args.config, "the Deployment must pass --config"
    config_dir, _, config_key = args.config.rpartition("/")
    mount = mounts[config_dir]
    assert mount.get("readOnly") is True
    volume = volumes[mount["name"]]
    config_map = config_maps[volume["configMap"]["name"]]
    assert config_key in config_map["data"], f"ConfigMap has no {config_key}"

    # The metrics Service selects the operator pod and targets the metrics port.
    assert service["spec"]["selector"].items() <= template_labels.items()
    [service_port] = service["spec"]["ports"]
    assert _port_number(container, service_port["targetPort"]) == args.metrics_port
    annotations = service["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/port") == str(args.metrics_port)
    assert annotations.get("prometheus.io/path") == "/metrics"
    return args, deployment, config_map.get("data", {})[config_key]


def parse_config(text: str, tmp_path: Path) -> OperatorConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)  # the operator's own validation at start


# ---------------------------------------------------------------- kustomize base

MANIFEST_OBJECTS = manifest_objects()


def test_manifests_exist():
    kinds = sorted(obj["kind"] for _, obj in MANIFEST_OBJECTS)
    assert kinds == ["ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
                     "Namespace", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"]


@pytest.mark.parametrize("source, obj", MANIFEST_OBJECTS, ids=[s for s, _ in MANIFEST_OBJECTS])
def test_every_manifest_is_valid_kubernetes(source, obj):
    validate_object(obj)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())
    namespace = only([o for _, o in MANIFEST_OBJECTS], "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE


def test_manifests_install_the_operator(tmp_path):
    args, deployment, config_text = check_install([o for _, o in MANIFEST_OBJECTS])
    assert args.namespace is None, "the base watches all namespaces"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/mlplatform/operator:0.1.0"
    assert parse_config(config_text, tmp_path) == OperatorConfig(), "the base config is the built-in defaults"


def test_kustomize_build_matches_the_files(kubectl_tool):
    out = subprocess.run([kubectl_tool, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    built = [o for _, o in load_stream(out.stdout, "kustomize")]
    assert sorted(o["kind"] for o in built) == sorted(o["kind"] for _, o in MANIFEST_OBJECTS)
    check_install(built)


def test_kustomize_watch_namespace_component(tmp_path, kubectl_tool):
    """manifests/watch-namespace: the operator's rules as a Role in the watched namespace, nothing cluster-wide."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({  # kustomize wants relative paths
        "resources": [os.path.relpath(MANIFESTS, overlay)],
        "components": [os.path.relpath(MANIFESTS / "watch-namespace", overlay)]}))
    out = subprocess.run([kubectl_tool, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    built = [o for _, o in load_stream(out.stdout, "kustomize")]
    for obj in built:
        validate_object(obj)
    args, _, _ = check_install(built)
    assert args.namespace == "team-a"
    role = only([o for o in built if o["kind"] == "Role" and o["metadata"]["namespace"] == "team-a"], "Role")
    assert role["rules"] == only([o for _, o in MANIFEST_OBJECTS if o["kind"] == "ClusterRole"
                                  and o["metadata"]["name"] == "mlplatform-operator"], "ClusterRole")["rules"]


# ---------------------------------------------------------------- Helm chart

def helm_run(helm, *args: str) -> str:
    command, env = helm
    out = subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def render(helm, *args: str, release: str = "mlplatform", namespace: str = NAMESPACE) -> list[dict]:
    text = helm_run(helm, "template", release, str(CHART), "--namespace", namespace, *args)
    return [obj for _, obj in load_stream(text, "helm template")]


def render_error(helm, *args: str) -> str:
    """helm template must refuse these values: its error message."""
    command, env = helm
    out = subprocess.run([*command, "template", "mlplatform", str(CHART), "--namespace", NAMESPACE, *args],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0, f"helm template {' '.join(args)} rendered:\n{out.stdout[:2000]}"
    return out.stderr


NO_LEADER_ELECTION = ["--set", "leaderElection.enabled=false", "--set", "replicaCount=1"]


def test_chart_lints(helm):
    helm_run(helm, "lint", "--strict", str(CHART))
    helm_run(helm, "lint", "--strict", str(CHART), "--set", "watchNamespace=team-a",
             "--set", "metrics.serviceMonitor.enabled=true")
    helm_run(helm, "lint", "--strict", str(CHART), *NO_LEADER_ELECTION)


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"], str(chart["appVersion"])) == \
        ("v2", "mlplatform", "0.1.0", "0.1.0")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["replicaCount"] == 2, "HA by default: a leader and a standby"
    assert values["leaderElection"] == {"enabled": True, "leaseName": "", "leaseDuration": 15, "renewDeadline": 10,
                                        "retryPeriod": 2}, "the operator's defaults"
    assert values["podDisruptionBudget"]["enabled"] is True and values["podAntiAffinity"] == "soft"
    assert values["config"] == {} and values["watchNamespace"] == ""
    assert values["metrics"]["serviceMonitor"]["enabled"] is False


@pytest.mark.parametrize("values, shape", [
    ([], {}),
    (["--set", "watchNamespace=team-a", "--set", "metrics.serviceMonitor.enabled=true", "--set", "verbose=true"], {}),
    (["--set", "nodeSelector.kubernetes\\.io/os=linux", "--set", "tolerations[0].key=dedicated",
      "--set", "tolerations[0].operator=Exists", "--set", "priorityClassName=system-cluster-critical",
      "--set", "image.tag=0.1.1", "--set", "serviceAccount.annotations.team=ml"], {}),
    (NO_LEADER_ELECTION, {"leader_election": False}),
    (["--set", "replicaCount=3", "--set", "podDisruptionBudget.minAvailable=1", "--set", "podAntiAffinity=hard",
      "--set", "leaderElection.leaseName=ml-lease", "--set", "leaderElection.leaseDuration=30",
      "--set", "leaderElection.renewDeadline=20", "--set", "leaderElection.retryPeriod=5"], {"replicas": 3}),
    (["--set", "replicaCount=1"], {"replicas": 1}),
], ids=["defaults", "namespaced-servicemonitor", "scheduling", "no-leader-election", "ha-options", "one-candidate"])
def test_every_rendered_object_is_valid_kubernetes(helm, values, shape):
    objects = render(helm, "--include-crds", *values)
    for obj in objects:
        validate_object(obj)
    crds = sorted(o["spec"]["names"]["plural"] for o in objects if o["kind"] == "CustomResourceDefinition")
    assert crds == PLURALS, "the chart ships the CRDs"
    check_install([o for o in objects if o["kind"] != "CustomResourceDefinition"], **shape)


def test_chart_defaults_install_the_operator(helm, tmp_path):
    objects = render(helm)
    args, deployment, config_text = check_install(objects)
    assert args.namespace is None
    assert deployment["metadata"]["name"] == "mlplatform-operator"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/mlplatform/operator:0.1.0"
    assert parse_config(config_text, tmp_path) == OperatorConfig()
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"], "no ServiceMonitor unless enabled"


def cluster_role(objects: list[dict], name: str) -> dict:
    return only([o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == name], "ClusterRole")


def test_chart_rbac_is_the_manifests_rbac(helm):
    chart = render(helm)
    manifests = [o for _, o in MANIFEST_OBJECTS]
    assert cluster_role(chart, "mlplatform-operator")["rules"] == \
        cluster_role(manifests, "mlplatform-operator")["rules"]
    for name in (VIEW_ROLE, EDIT_ROLE):
        chart_role, manifest_role = cluster_role(chart, name), cluster_role(manifests, name)
        assert chart_role["rules"] == manifest_role["rules"], name
        labels = [{k: v for k, v in r["metadata"]["labels"].items() if k.startswith(AGGREGATE_TO)}
                  for r in (chart_role, manifest_role)]
        assert labels[0] == labels[1], name
    assert only(chart, "Role")["rules"] == only(manifests, "Role")["rules"], "same lease, same grants"


@pytest.mark.parametrize("watch", ["team-a", NAMESPACE], ids=["other-namespace", "release-namespace"])
def test_chart_watch_namespace_grants_a_role_there_only(helm, watch):
    objects = render(helm, "--set", f"watchNamespace={watch}")
    args, _, _ = check_install(objects)  # the Role in `watch`, no ClusterRoleBinding, the lease Role
    assert args.namespace == watch
    role = only([o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == watch
                 and not o["metadata"]["name"].endswith("-leader-election")], "Role")
    assert role["metadata"]["name"] == "mlplatform-operator"
    assert role["rules"] == cluster_role(render(helm), "mlplatform-operator")["rules"], "the same rules, namespaced"
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole") == [EDIT_ROLE, VIEW_ROLE]
    # Without leader election: the operator's Role only.
    objects = render(helm, "--set", f"watchNamespace={watch}", *NO_LEADER_ELECTION)
    check_install(objects, leader_election=False)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in ("Role", "RoleBinding")] == \
        [("Role", "mlplatform-operator"), ("RoleBinding", "mlplatform-operator")]


def test_chart_rbac_options(helm):
    objects = render(helm, "--set", "rbac.aggregateClusterRoles=false")
    check_aggregated_roles(objects, expected=False)
    assert cluster_role(objects, "mlplatform-operator")
    rbac_kinds = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    for values in (["--set", "rbac.create=false"], ["--set", "rbac.create=false", "--set", "watchNamespace=team-a"]):
        objects = render(helm, *values)
        assert not [o for o in objects if o["kind"] in rbac_kinds], f"{values}: no RBAC at all"
    # Another release name: the teams' roles follow the chart's name (nameOverride), the operator's the release.
    objects = render(helm, "--set", "nameOverride=ml", release="ml", namespace="platform")
    for name in ("ml-operator", "ml-view", "ml-edit"):
        assert cluster_role(objects, name)


def test_chart_defaults_are_the_manifests_ha_shape(helm):
    chart, manifests = only(render(helm), "Deployment"), only([o for _, o in MANIFEST_OBJECTS], "Deployment")
    for deployment in (chart, manifests):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        args = build_parser().parse_args(container["command"][1:] + container["args"])
        assert (args.leader_elect, args.leader_elect_lease_name) == (True, "mlplatform-operator")
        assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
                args.leader_elect_retry_period) == (15, 10, 2)
        assert hostname_spread(deployment["spec"]["template"]["spec"],
                               deployment["spec"]["template"]["metadata"]["labels"]) == "preferred"
    assert chart["spec"]["strategy"] == manifests["spec"]["strategy"]
    assert chart["spec"]["replicas"] == manifests["spec"]["replicas"] == 2


def test_chart_without_leader_election_runs_one_replica(helm):
    objects = render(helm, *NO_LEADER_ELECTION)
    args, deployment, _ = check_install(objects, leader_election=False)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not args.leader_elect
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding", "PodDisruptionBudget")]
    assert "affinity" not in deployment["spec"]["template"]["spec"], "nothing to spread"


@pytest.mark.parametrize("replicas", ["2", "3"])
def test_chart_refuses_replicas_without_leader_election(helm, replicas):
    error = render_error(helm, "--set", "leaderElection.enabled=false", "--set", f"replicaCount={replicas}")
    assert f"replicaCount={replicas} with leaderElection.enabled=false" in error
    assert "Set replicaCount=1, or keep leader election on" in error


@pytest.mark.parametrize("duration, deadline, retry", [
    (15, 10, 2), (30, 20, 5), (4, 3, 2), (3, 2, 1),
    (10, 10, 2), (9, 10, 2), (15, 2, 2), (15, 10, 0), (15, 12, 10),
])
def test_chart_refuses_lease_timings_the_operator_refuses(helm, duration, deadline, retry):
    values = ["--set", f"leaderElection.leaseDuration={duration}", "--set", f"leaderElection.renewDeadline={deadline}",
              "--set", f"leaderElection.retryPeriod={retry}"]
    problems = LeaseSettings(lease_duration=duration, renew_deadline=deadline, retry_period=retry).problems()
    if problems:
        assert "leaderElection." in render_error(helm, *values), "a pod that exits 2 at start is no install"
    else:
        args, _, _ = check_install(render(helm, *values))
        assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
                args.leader_elect_retry_period) == (duration, deadline, retry)


@pytest.mark.parametrize("values, message", [
    (["--set", "leaderElection.leaseDuration=15.5"], "leaderElection.leaseDuration: found 15.5"),
    (["--set", "replicaCount=1.5"], "replicaCount: found 1.5"),
    (["--set", "podAntiAffinity=sometimes"], "podAntiAffinity: found \"sometimes\""),
], ids=["fractional-seconds", "fractional-replicas", "unknown-anti-affinity"])
def test_chart_refuses_bad_values(helm, values, message):
    assert message in render_error(helm, *values)


def test_lease_values_reach_the_args_and_the_role(helm):
    objects = render(helm, "--set", "leaderElection.leaseName=ml-lease", "--set", "leaderElection.leaseDuration=30",
                     "--set", "leaderElection.renewDeadline=20", "--set", "leaderElection.retryPeriod=5",
                     release="ml", namespace="platform")
    args, _, _ = check_install(objects, namespace="platform")  # the Role names args' lease
    assert (args.leader_elect_lease_name, args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
            args.leader_elect_retry_period) == ("ml-lease", 30, 20, 5)
    # The lease name defaults to the release's full name: two releases never share a lease.
    args, _, _ = check_install(render(helm, release="ml", namespace="platform"), namespace="platform")
    assert args.leader_elect_lease_name == "ml-operator"


def test_pod_disruption_budget_options(helm):
    budget = only(render(helm, "--set", "podDisruptionBudget.minAvailable=1"), "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1 and "maxUnavailable" not in budget["spec"]
    default = only(render(helm), "PodDisruptionBudget")
    assert default["spec"]["maxUnavailable"] == 1 and "minAvailable" not in default["spec"]
    assert default["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", "a pod that is not ready may go"
    objects = render(helm, "--set", "podDisruptionBudget.enabled=false")
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    objects = render(helm, "--set", "replicaCount=1")
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"], "one pod: a budget would block drains"
    assert only(objects, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate", "the lease still guards"


def test_anti_affinity_options(helm):
    def pod_of(*values):
        template = only(render(helm, *values), "Deployment")["spec"]["template"]
        return template["spec"], template["metadata"]["labels"]

    assert hostname_spread(*pod_of("--set", "podAntiAffinity=hard")) == "required"
    pod, _ = pod_of("--set", "podAntiAffinity=")
    assert "affinity" not in pod
    # Other affinity keeps the spread; an own podAntiAffinity replaces it.
    node_affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]}}
    pod, labels = pod_of("--set-json", "affinity=" + json.dumps({"nodeAffinity": node_affinity}))
    assert pod["affinity"]["nodeAffinity"] == node_affinity and hostname_spread(pod, labels) == "preferred"
    own = {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {
        "labelSelector": {"matchLabels": {"app": "other"}}, "topologyKey": "topology.kubernetes.io/zone"}}]}
    pod, _ = pod_of("--set-json", "affinity=" + json.dumps({"podAntiAffinity": own}))
    assert pod["affinity"] == {"podAntiAffinity": own}


def test_watch_namespace_adds_the_namespace_flag(helm):
    args, _, _ = check_install(render(helm, "--set", "watchNamespace=team-a"))  # and a Role in team-a only
    assert args.namespace == "team-a"


def test_config_values_reach_the_config_map(helm, tmp_path):
    config = {
        "gpuTypes": {"nvidia-h100-80gb": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "defaults": {"clusterDomain": "corp.example", "trainingTtlSecondsAfterFinished": 3600},
        "storageInitializer": {"image": "registry.example/storage-initializer:1.0"},
        "feast": {"envFrom": [{"secretRef": {"name": "feast-store"}}]},
    }
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"config": config}))
    default_deployment = only(render(helm), "Deployment")
    objects = render(helm, "-f", str(values))
    _, deployment, config_text = check_install(objects)
    assert yaml.safe_load(config_text) == config
    loaded = parse_config(config_text, tmp_path)
    assert loaded.defaults.cluster_domain == "corp.example"
    assert loaded.defaults.training_ttl_seconds_after_finished == 3600
    assert loaded.storage_initializer.image == "registry.example/storage-initializer:1.0"
    assert loaded.gpu_types == config["gpuTypes"]
    assert loaded.feast.env_from == [{"secretRef": {"name": "feast-store"}}]
    checksum = "checksum/config"
    assert deployment["spec"]["template"]["metadata"]["annotations"][checksum] != \
        default_deployment["spec"]["template"]["metadata"]["annotations"][checksum], "a config change rolls the pod"


def test_service_monitor_when_enabled(helm):
    objects = render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                     "--set-json", "metrics.serviceMonitor.labels=" + json.dumps({"release": "prom"}))
    monitor = only(objects, "ServiceMonitor")
    service = only(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"


def test_release_name_and_namespace_follow_the_install(helm):
    objects = render(helm, release="ml", namespace="platform")
    check_install(objects, namespace="platform")
    assert only(objects, "Deployment")["metadata"]["name"] == "ml-operator"
