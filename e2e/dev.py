"""`make dev`: local control plane, CRDs, the operator in the background, the examples applied.

    python e2e/dev.py up      start (or restart the operator of) the dev environment, then show `kubectl get ml -A`
    python e2e/dev.py down    stop the operator started by `up` (the cluster is stopped by `make cluster-down`)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e"))

import cluster  # noqa: E402  e2e/controlplane/cluster.py
from operator_fixtures import E2E_OPERATOR_CONFIG, Kubectl, Operator  # noqa: E402

RUN = ROOT / ".run"
PID_FILE = RUN / "dev-operator.pid"
LOG_FILE = RUN / "dev-operator.log"
CONFIG_FILE = RUN / "dev-config.yaml"
EXAMPLES = ROOT / "examples"


def stop_operator() -> bool:
    if not PID_FILE.exists():
        return False
    pid = int(PID_FILE.read_text())
    PID_FILE.unlink()
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    if b"mlplatform" not in cmdline:
        return False  # the PID was recycled: not ours
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    return True


def example_namespaces() -> set[str]:
    namespaces = set()
    for path in EXAMPLES.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("metadata", {}).get("namespace"):
                namespaces.add(doc["metadata"]["namespace"])
    return namespaces


def up() -> int:
    kubeconfig = str(cluster.Cluster().up())
    kubectl = Kubectl(kubeconfig)
    print("==> CRDs", flush=True)
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in ("featureviews", "modeldeployments", "trainingjobs"):
        kubectl.run("wait", "--for=condition=Established", f"crd/{plural}.mlplatform.dev", "--timeout=60s")
    if stop_operator():
        print("==> stopped the previous dev operator", flush=True)
    RUN.mkdir(exist_ok=True)
    CONFIG_FILE.write_text(yaml.safe_dump(E2E_OPERATOR_CONFIG))
    operator = Operator(kubeconfig, LOG_FILE)
    operator.start(CONFIG_FILE)
    PID_FILE.write_text(str(operator.process.pid))
    print(f"==> operator running (pid {operator.process.pid}, log {LOG_FILE.relative_to(ROOT)}, "
          f"metrics http://127.0.0.1:{operator.metrics_port}/metrics)", flush=True)
    for namespace in sorted(example_namespaces()):
        kubectl.run("create", "namespace", namespace, check=False)
    print("==> applying examples/", flush=True)
    print(kubectl.run("apply", "-f", str(EXAMPLES)).stdout, end="")
    time.sleep(20)  # long enough for the training run and materialization to finish on kwok
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
    print("operator stopped" if stop_operator() else "no dev operator running")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args()
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
