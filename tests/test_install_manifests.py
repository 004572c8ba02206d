"""Install manifests: the kustomize base in manifests/ and the Helm chart in charts/mlplatform/.

No cluster: every object is validated against the Kubernetes schemas (kubernetes-validate, strict),
the ClusterRole is checked against what the operator calls, and the Deployment's command line is
parsed with the operator's own CLI parser. The chart is rendered with a real `helm`, built from its
Go module by charts/build-helm.sh (or given as MLPLATFORM_HELM); without one these tests fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlplatform.api import GROUP, KINDS
from mlplatform.cli import build_parser
from mlplatform.config import OperatorConfig, load_config

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
CHART = REPO / "charts" / "mlplatform"
BUILD_HELM = REPO / "charts" / "build-helm.sh"
K8S_VERSION = "1.36.0"
NAMESPACE = "mlplatform-system"
RUN_AS_USER = 65532

CRUD = {"get", "list", "watch", "create", "update", "patch", "delete"}
PLURALS = sorted(kind.plural for kind in KINDS.values())

# (apiGroup, resource) -> verbs the operator needs; why, in operator/mlplatform/kube.py and operator_main.py.
REQUIRED_RULES: dict[tuple[str, str], set[str]] = {
    **{(GROUP, plural): {"get", "list", "watch"} for plural in PLURALS},
    **{(GROUP, f"{plural}/status"): {"get", "patch", "update"} for plural in PLURALS},
    # ownerReferences with blockOwnerDeletion (OwnerReferencesPermissionEnforcement admission).
    **{(GROUP, f"{plural}/finalizers"): {"update"} for plural in PLURALS},
    ("", "configmaps"): CRUD,
    ("", "services"): CRUD,
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"get", "list", "watch", "create", "patch"},
    ("", "persistentvolumeclaims"): {"get"},
    ("", "namespaces"): {"list", "watch"},
    ("apps", "deployments"): CRUD,
    ("autoscaling", "horizontalpodautoscalers"): CRUD,
    ("policy", "poddisruptionbudgets"): CRUD,
    ("batch", "jobs"): CRUD,
    ("batch", "cronjobs"): CRUD,
    ("kueue.x-k8s.io", "localqueues"): {"get", "list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
# Never granted: the spec of a custom resource is the user's; secrets are none of the operator's business.
FORBIDDEN_RULES: dict[tuple[str, str], set[str]] = {
    **{(GROUP, plural): {"create", "update", "patch", "delete", "deletecollection"} for plural in PLURALS},
    ("", "secrets"): CRUD,
    ("", "pods"): {"create", "update", "patch", "delete"},
}


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


def check_cluster_role(role: dict) -> None:
    have = granted(role)
    missing = {key: sorted(verbs - have.get(key, set())) for key, verbs in REQUIRED_RULES.items()
               if verbs - have.get(key, set())}
    assert not missing, f"ClusterRole {role['metadata']['name']} lacks {missing}"
    extra = {key: sorted(have.get(key, set()) & verbs) for key, verbs in FORBIDDEN_RULES.items()
             if have.get(key, set()) & verbs}
    assert not extra, f"ClusterRole {role['metadata']['name']} grants too much: {extra}"
    unexpected = sorted(set(have) - set(REQUIRED_RULES))
    assert not unexpected, f"resources granted that the operator does not use: {unexpected}"


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"probe port {port!r} is not a container port name"
    return named[port]


def check_install(objects: list[dict], namespace: str = NAMESPACE):
    """The checks shared by the kustomize base and the chart; returns (parsed args, Deployment, ConfigMap)."""
    deployment = only(objects, "Deployment")
    account = only(objects, "ServiceAccount")
    role = only(objects, "ClusterRole")
    binding = only(objects, "ClusterRoleBinding")
    service = only(objects, "Service")
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for obj in (deployment, account, service, *config_maps.values()):
        assert obj["metadata"]["namespace"] == namespace, obj["metadata"]

    check_cluster_role(role)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": namespace}]

    spec = deployment["spec"]
    assert spec["replicas"] == 1, "kopf standalone: exactly one replica"
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

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": args.metrics_port, "health": args.health_port}
    for probe_name in ("livenessProbe", "readinessProbe"):
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == "/healthz", probe_name
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
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Namespace", "Service",
                     "ServiceAccount"]


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


def test_kustomize_build_matches_the_files():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: the files themselves are checked above")
    out = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    built = [o for _, o in load_stream(out.stdout, "kustomize")]
    assert sorted(o["kind"] for o in built) == sorted(o["kind"] for _, o in MANIFEST_OBJECTS)
    check_install(built)


# ---------------------------------------------------------------- Helm chart

@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> list[str]:
    """The helm command: MLPLATFORM_HELM, else the one charts/build-helm.sh builds (and caches)."""
    path = os.environ.get("MLPLATFORM_HELM")
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.fail(f"MLPLATFORM_HELM={path} is not an executable file")
    else:
        try:
            out = subprocess.run(["bash", str(BUILD_HELM)], capture_output=True, text=True, timeout=1500)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{BUILD_HELM} did not build helm within 25 minutes")
        if out.returncode != 0:
            pytest.fail(f"helm is needed to test the chart and {BUILD_HELM.relative_to(REPO)} could not build it "
                        f"(exit {out.returncode}); install Go, or set MLPLATFORM_HELM to a helm binary.\n"
                        f"{out.stderr[-4000:]}")
        path = out.stdout.strip().splitlines()[-1]
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    version = subprocess.run([path, "version", "--short"], capture_output=True, text=True, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("v3."), version
    return [path], env


def helm_run(helm, *args: str) -> str:
    command, env = helm
    out = subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def render(helm, *args: str, release: str = "mlplatform", namespace: str = NAMESPACE) -> list[dict]:
    text = helm_run(helm, "template", release, str(CHART), "--namespace", namespace, *args)
    return [obj for _, obj in load_stream(text, "helm template")]


def test_chart_lints(helm):
    helm_run(helm, "lint", "--strict", str(CHART))
    helm_run(helm, "lint", "--strict", str(CHART), "--set", "watchNamespace=team-a",
             "--set", "metrics.serviceMonitor.enabled=true")


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"], str(chart["appVersion"])) == \
        ("v2", "mlplatform", "0.1.0", "0.1.0")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert "replicaCount" not in values, "one replica only: not a value"
    assert values["config"] == {} and values["watchNamespace"] == ""
    assert values["metrics"]["serviceMonitor"]["enabled"] is False


@pytest.mark.parametrize("values", [
    [],
    ["--set", "watchNamespace=team-a", "--set", "metrics.serviceMonitor.enabled=true", "--set", "verbose=true"],
    ["--set", "nodeSelector.kubernetes\\.io/os=linux", "--set", "tolerations[0].key=dedicated",
     "--set", "tolerations[0].operator=Exists", "--set", "priorityClassName=system-cluster-critical",
     "--set", "image.tag=0.1.1", "--set", "serviceAccount.annotations.team=ml"],
], ids=["defaults", "namespaced-servicemonitor", "scheduling"])
def test_every_rendered_object_is_valid_kubernetes(helm, values):
    objects = render(helm, "--include-crds", *values)
    for obj in objects:
        validate_object(obj)
    crds = sorted(o["spec"]["names"]["plural"] for o in objects if o["kind"] == "CustomResourceDefinition")
    assert crds == PLURALS, "the chart ships the CRDs"
    check_install([o for o in objects if o["kind"] != "CustomResourceDefinition"])


def test_chart_defaults_install_the_operator(helm, tmp_path):
    objects = render(helm)
    args, deployment, config_text = check_install(objects)
    assert args.namespace is None
    assert deployment["metadata"]["name"] == "mlplatform-operator"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/mlplatform/operator:0.1.0"
    assert parse_config(config_text, tmp_path) == OperatorConfig()
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"], "no ServiceMonitor unless enabled"


def test_chart_rbac_is_the_manifests_rbac(helm):
    chart_role = only(render(helm), "ClusterRole")
    manifest_role = only([o for _, o in MANIFEST_OBJECTS], "ClusterRole")
    assert granted(chart_role) == granted(manifest_role)


def test_watch_namespace_adds_the_namespace_flag(helm):
    args, _, _ = check_install(render(helm, "--set", "watchNamespace=team-a"))
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
