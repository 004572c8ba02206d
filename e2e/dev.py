"""`make dev`: the local control plane with what the examples need, CRDs, the operator in the background,
the examples applied; then `kubectl get ml -A`.

    python e2e/dev.py up      start (or bring up to date) the dev environment, then show `kubectl get ml -A`
    python e2e/dev.py down    stop the operator and the components started by `up` (the control plane is
                              stopped by `make cluster-down`, which `make dev-down` also runs)

What the examples need, beyond the control plane (all in the dev cluster's run folder, .run/cluster):
- Kueue, with a ClusterQueue and the LocalQueue `team-a` in `research` (llm-finetune is queued there);
- the LeaderWorkerSet controller (llama-405b: 2 nodes per replica);
- when built (`make tools`, which `make dev` runs): Prometheus and KEDA (operator and external metrics API
  server), for ModelDeployments that autoscale on model metrics (`components.py prometheus status` prints
  Prometheus' URL);
- storage: a StorageClass `shared-rwx` with pre-created ReadWriteMany volumes, which the controller
  manager binds to the claims (llama-405b's model cache; llm-finetune's checkpoint claim `llm-ckpt`,
  created here as a team would);
- 4 more H100 nodes (8 in all): llama-405b holds 2 whole nodes, llm-finetune's 4 workers 4 more;
- runs that report metrics: kwok completes Job pods with the termination message in the pod annotation
  `mlplatform.dev/kwok-termination-message` (the operator copies `mlplatform.dev/kwok-*` annotations of a
  resource to its pods, dev config), which the operator reads as the run's metrics. dev.py adds it to
  fraud-train as it applies the examples (the files stay what a team commits), so fraud-gated, gated on
  auc and loss, finds a qualifying run; and to churn-nightly, whose shards report the rows they scored
  ({"rows": 125000} each, as the scoring entrypoint writes it).
An example whose failure is its point carries the annotation `mlplatform.dev/example-expects: NotReady`
(with a comment saying why); `up` waits for every other example to be Ready and fails if one is not.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import yaml

from mlplatform.api import GROUP, KINDS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e"))

import build as build_module  # noqa: E402 - e2e/controlplane/ is on sys.path only after the lines above
import cluster  # noqa: E402 - same
import components  # noqa: E402 - same
from harness import DEV_PID_FILE, E2E_OPERATOR_CONFIG, Kubectl, Operator, stop_dev_operator  # noqa: E402 - same

RUN = ROOT / ".run"
LOG_FILE = RUN / "dev-operator.log"
CONFIG_FILE = RUN / "dev-config.yaml"
EXAMPLES = ROOT / "examples"
EXPECTS = "mlplatform.dev/example-expects"

# Simulated run metrics (kwok writes them as the termination message of the Job's pods).
RUN_METRICS = {("TrainingJob", "risk", "fraud-train"): {"auc": 0.95, "loss": 0.21},
               ("BatchPrediction", "risk", "churn-nightly"): {"rows": 125000}}
EXTRA_H100_NODES = [cluster.NodeSpec(f"kwok-h100-{i}", 96, "1000Gi", "gpu-h100x8", 8, "NVIDIA-H100-80GB-HBM3",
                                     ip=f"10.240.0.{20 + i}", zone=cluster.zone(i)) for i in range(4, 8)]
STORAGE_CLASS = "shared-rwx"
SIGNALS = ("prometheus", "keda")  # model metrics and KEDA autoscaling (e2e/controlplane/prometheus_server.py, keda.py)


def signals_built() -> bool:
    return all(build_module.binary_path(b).is_file() for b in (build_module.PROMETHEUS_BINARY,
                                                                build_module.KEDA_OPERATOR_BINARY,
                                                                build_module.KEDA_ADAPTER_BINARY))


def example_documents() -> list[dict]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def with_run_metrics(doc: dict) -> dict:
    key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
    if key not in RUN_METRICS:
        return doc
    doc = copy.deepcopy(doc)
    annotations = doc["metadata"].setdefault("annotations", {})
    annotations["mlplatform.dev/kwok-termination-message"] = json.dumps(RUN_METRICS[key])
    return doc


def volume(name: str, size: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteMany"], "storageClassName": STORAGE_CLASS,
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/mlplatform-dev/{name}"}}}


def prerequisites() -> list[dict]:
    """What a platform team would have set up before the examples: storage, queues, a checkpoint claim."""
    gpu_quota = sum(n.gpus for n in EXTRA_H100_NODES) * 2  # the 8 H100 nodes
    return [
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": STORAGE_CLASS},
         # Pre-created volumes, bound by the controller manager's PV controller (no provisioner runs here).
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"},
        volume("dev-model-cache-1", "1000Gi"),
        volume("dev-model-cache-2", "1000Gi"),
        volume("dev-checkpoints", "2000Gi"),
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "llm-ckpt", "namespace": "research"},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": STORAGE_CLASS, "volumeName": "dev-checkpoints",
                  "resources": {"requests": {"storage": "2000Gi"}}}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "h100"},
         "spec": {"nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "research"},
         "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "research"}},
                  "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [
                      {"name": "h100", "resources": [{"name": "cpu", "nominalQuota": "768"},
                                                     {"name": "memory", "nominalQuota": "8000Gi"},
                                                     {"name": "nvidia.com/gpu", "nominalQuota": gpu_quota}]}]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "team-a", "namespace": "research"},
         "spec": {"clusterQueue": "research"}},
    ]


def settle(kubectl: Kubectl, timeout: float) -> list[str]:
    """Wait until every example is Ready (those expected not to be: Stalled or not Ready is fine); returns the
    ones still not Ready when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        items = yaml.safe_load(kubectl.run("get", "ml", "-A", "-o", "yaml").stdout)["items"]
        late = []
        for item in items:
            conditions = {c["type"]: c["status"] for c in (item.get("status") or {}).get("conditions") or []}
            expected_failure = (item["metadata"].get("annotations") or {}).get(EXPECTS) == "NotReady"
            if not expected_failure and conditions.get("Ready") != "True":
                late.append(f"{item['kind']} {item['metadata']['namespace']}/{item['metadata']['name']}")
        if items and not late:
            return []
        if time.monotonic() > deadline:
            return late
        time.sleep(1)


def needs_keda(doc: dict) -> bool:
    return ((doc.get("spec") or {}).get("autoscaling") or {}).get("engine") == "keda"


def step(what: str) -> None:
    print(f"==> {what}", flush=True)


def up(timeout: float) -> int:
    t0 = time.monotonic()
    handle = cluster.Cluster()
    kubeconfig = str(handle.up())
    kubectl = Kubectl(kubeconfig)
    step("CRDs")
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for kind in KINDS.values():
        kubectl.run("wait", "--for=condition=Established", f"crd/{kind.plural}.{GROUP}", "--timeout=60s")
    step(f"{len(EXTRA_H100_NODES)} more H100 nodes")
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all([n.manifest() for n in EXTRA_H100_NODES]))
    kubectl.run("wait", "--for=condition=Ready", *[f"node/{n.name}" for n in EXTRA_H100_NODES], "--timeout=120s")
    for name in ("kueue", "lws"):
        step(f"{name} ({components.SPECS[name].version})")
        components.runner(name, handle.run).up()
    signals = signals_built()
    for name in SIGNALS:  # optional: started when `make tools` / `make dev` built them
        runner = components.runner(name, handle.run)
        if signals:
            step(f"{name} ({runner.version})")
            runner.up()
        else:
            step(f"{name}: not built (make tools builds it); skipped, and the examples that autoscale with KEDA")
    if stop_dev_operator():
        step("stopped the previous dev operator")
    for namespace in sorted({d["metadata"]["namespace"] for d in example_documents()}):
        kubectl.run("create", "namespace", namespace, check=False)
    step("storage, queues, checkpoint claim")
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(prerequisites()))
    RUN.mkdir(exist_ok=True)
    config = dict(E2E_OPERATOR_CONFIG)
    if signals:
        config["prometheus"] = {"url": components.runner("prometheus", handle.run).url}
    CONFIG_FILE.write_text(yaml.safe_dump(config))
    operator = Operator(kubeconfig, LOG_FILE)
    operator.start(CONFIG_FILE)  # after Kueue and LWS serve: it sees them installed from its first list
    DEV_PID_FILE.write_text(str(operator.process.pid))
    step(f"operator running (pid {operator.process.pid}, log {LOG_FILE.relative_to(ROOT)}, "
         f"metrics http://127.0.0.1:{operator.metrics_port}/metrics)")
    step("applying examples/ (fraud-train's simulated runs report auc and loss)")
    documents = [with_run_metrics(doc) for doc in example_documents() if signals or not needs_keda(doc)]
    print(kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(documents)).stdout, end="")
    late = settle(kubectl, timeout)
    step("kubectl get ml -A")
    print(kubectl.run("get", "ml", "-A").stdout)
    if signals_built():
        print(f"Prometheus: {components.runner('prometheus', handle.run).url} (the operator's prometheus.url; "
              "KEDA's external metrics API: kubectl get apiservice v1beta1.external.metrics.k8s.io)")
    print(f"""Ready after {time.monotonic() - t0:.0f}s. Try:
  export KUBECONFIG={kubeconfig}
  alias kubectl={kubectl.binary}
  kubectl describe modeldeployment fraud-gated -n risk
  kubectl get deploy,job,cronjob,svc,hpa,pdb -n risk
  kubectl get leaderworkersets,pvc,workloads -n research
Stop: make dev-down (operator, Kueue, LWS, KEDA, Prometheus and cluster)""")
    if late:
        print(f"not Ready after {timeout:.0f}s: {', '.join(late)}", file=sys.stderr)
        return 1
    return 0


def down() -> int:
    print("operator stopped" if stop_dev_operator() else "no dev operator running")
    handle = cluster.Cluster()
    for name in ("keda", "prometheus", "lws", "kueue"):
        components.runner(name, handle.run).down(remove_crds=False)  # the processes, even with the cluster gone
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the examples to be Ready")
    args = parser.parse_args()
    return up(args.timeout) if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
