"""`make dev`: local control plane, CRDs, the operator in the background, the examples applied.

    python e2e/dev.py up      start (or restart the operator of) the dev environment, then show `kubectl get ml -A`
    python e2e/dev.py down    stop the operator started by `up` (the cluster is stopped by `make cluster-down`)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e"))

import cluster  # noqa: E402  e2e/controlplane/cluster.py
from harness import DEV_PID_FILE, E2E_OPERATOR_CONFIG, Kubectl, Operator, stop_dev_operator  # noqa: E402 - e2e/ and e2e/controlplane/ are on sys.path only after the lines above

RUN = ROOT / ".run"
LOG_FILE = RUN / "dev-operator.log"
CONFIG_FILE = RUN / "dev-config.yaml"
EXAMPLES = ROOT / "examples"


def example_namespaces() -> set[str]:
    namespaces = set()
    for path in EXAMPLES.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("metadata", {}).get("namespace"):
                namespaces.add(doc["metadata"]["namespace"])
    return namespaces


def settle(kubectl: Kubectl, timeout: float = 90) -> None:
    """Wait until every example is Ready or Stalled (or the timeout): what `get ml` shows is then final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = yaml.safe_load(kubectl.run("get", "ml", "-A", "-o", "yaml").stdout)["items"]
        settled = [any(c["type"] in ("Ready", "Stalled") and c["status"] == "True"
                       for c in (item.get("status") or {}).get("conditions") or []) for item in items]
        if items and all(settled):
            return
        time.sleep(1)


def up() -> int:
    kubeconfig = str(cluster.Cluster().up())
    kubectl = Kubectl(kubeconfig)
    print("==> CRDs", flush=True)
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in ("featureviews", "modeldeployments", "trainingjobs"):
        kubectl.run("wait", "--for=condition=Established", f"crd/{plural}.mlplatform.dev", "--timeout=60s")
    if stop_dev_operator():
        print("==> stopped the previous dev operator", flush=True)
    RUN.mkdir(exist_ok=True)
    CONFIG_FILE.write_text(yaml.safe_dump(E2E_OPERATOR_CONFIG))
    operator = Operator(kubeconfig, LOG_FILE)
    operator.start(CONFIG_FILE)
    DEV_PID_FILE.write_text(str(operator.process.pid))
    print(f"==> operator running (pid {operator.process.pid}, log {LOG_FILE.relative_to(ROOT)}, "
          f"metrics http://127.0.0.1:{operator.metrics_port}/metrics)", flush=True)
    for namespace in sorted(example_namespaces()):
        kubectl.run("create", "namespace", namespace, check=False)
    print("==> applying examples/", flush=True)
    print(kubectl.run("apply", "-f", str(EXAMPLES)).stdout, end="")
    settle(kubectl)
    print("==> kubectl get ml -A")
    print(kubectl.run("get", "ml", "-A").stdout)
    print(f"""Try:
  export KUBECONFIG={kubeconfig}
  alias kubectl={kubectl.binary}
  kubectl describe modeldeployment fraud-scorer -n risk
  kubectl get deploy,job,cronjob,svc,hpa,pdb -n risk
Stop: make dev-down (operator and cluster)""")
    return 0


def down() -> int:
    print("operator stopped" if stop_dev_operator() else "no dev operator running")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args()
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
