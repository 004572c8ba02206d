"""Real KEDA beside the local control plane (built by build.py from the pinned github.com/kedacore/keda/v2
module, run by components.py: `components.py keda up|down|status`).

How the pieces reach each other (everything on loopback, except the two addresses of the cluster's own network
namespace, netns.py):

    kube-apiserver --(APIService v1beta1.external.metrics.k8s.io -> Service keda/keda-metrics-apiserver, no
        selector -> EndpointSlice <inside ip>:6443)--> keda-adapter (inside the namespace; serving cert from
        the cluster CA for keda-metrics-apiserver.keda.svc and the inside ip)
    keda-adapter --(gRPC, mutual TLS, 127.0.0.1:<grpc> inside, bridged to the host's loopback)--> keda-operator
    keda-adapter, keda-operator --(https://127.0.0.1:<apiserver port>: bridged inside, direct outside)--> kube-apiserver
    keda-operator (on the host) --(a ScaledObject's prometheus trigger, serverAddress http://127.0.0.1:<port>)-->
        Prometheus (prometheus_server.py)

The API server reaches an APIService's endpoints directly (--enable-aggregator-routing: no kube-proxy here);
the HPA controller in kube-controller-manager (service account horizontal-pod-autoscaler) reads the external
metrics through it, as in a real cluster. `up` also makes sure those two flags and the HPA sync flags
(cluster.HPA_FLAGS) are on the running control plane.

`down` deletes the APIService first (an unavailable aggregated API breaks discovery, and with it namespace
deletion), then, when asked, the CRDs (finalizers cleared), then stops the processes and removes the namespace.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402 - e2e/controlplane/build.py
import cluster  # noqa: E402 - e2e/controlplane/cluster.py
import components  # noqa: E402 - e2e/controlplane/components.py
import netns  # noqa: E402 - e2e/controlplane/netns.py
import versions  # noqa: E402 - e2e/controlplane/versions.py

MODULE = "github.com/kedacore/keda/v2"
NAMESPACE = "keda"                          # POD_NAMESPACE of both processes (KEDA's cluster object namespace)
SERVICE = "keda-metrics-apiserver"
APISERVICE = "v1beta1.external.metrics.k8s.io"
ADAPTER_PORT = 6443                         # inside the namespace (its own port space)
ADAPTER_METRICS_PORT = 8080                 # the adapter binds ":<port>": inside the namespace only
CRD_GLOB = "config/crd/bases/*.yaml"
PROCESSES = ("bridge", "operator", "adapter")  # start order; stopped in reverse


class KedaError(RuntimeError):
    pass


def registration(inside_ip: str, ca_bundle: str) -> list[dict]:
    """RBAC as upstream's config/metrics-server, and the APIService -> Service (no selector) -> EndpointSlice
    at the adapter inside the namespace."""
    labels = {"app.kubernetes.io/part-of": "keda-operator", "app.kubernetes.io/managed-by": "mlplatform-e2e"}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "keda-external-metrics-reader", "labels": labels},
         "rules": [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": ["*"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "keda-hpa-controller-external-metrics", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "keda-external-metrics-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": ADAPTER_PORT, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{SERVICE}-netns", "namespace": NAMESPACE,
                      "labels": {**labels, "kubernetes.io/service-name": SERVICE,
                                 "endpointslice.kubernetes.io/managed-by": "mlplatform-e2e"}},
         "addressType": "IPv4",
         "ports": [{"name": "https", "port": ADAPTER_PORT, "protocol": "TCP"}],
         "endpoints": [{"addresses": [inside_ip], "conditions": {"ready": True}}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE, "labels": labels},
         "spec": {"service": {"name": SERVICE, "namespace": NAMESPACE, "port": 443},
                  "group": "external.metrics.k8s.io", "version": "v1beta1", "caBundle": ca_bundle,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]


def crds(version: str = versions.KEDA) -> list[dict]:
    """The CRDs of the pinned KEDA module (`go mod download`: the module cache, or the Go module proxy)."""
    source = components.module_dir(MODULE, version)
    paths = sorted(source.glob(CRD_GLOB))
    if not paths:
        raise KedaError(f"{MODULE}@{version} has no {CRD_GLOB}")
    return [yaml.safe_load(p.read_text()) for p in paths]


def crd_manifest(kind: str) -> dict:
    """One KEDA CRD by kind (ScaledObject, TriggerAuthentication, ...), e.g. to validate rendered objects against
    its schema (like lws.crd_manifest)."""
    [crd] = [c for c in crds() if c["spec"]["names"]["kind"] == kind]
    return crd


class KedaRunner:
    """KEDA's operator and metrics API server for one local cluster (a run dir of cluster.py)."""

    name = "keda"
    version = versions.KEDA

    def __init__(self, run_dir: str | os.PathLike | None = None):
        self.cluster = cluster.Cluster(run_dir)
        self.dir = self.cluster.run / self.name
        self.state_path = self.dir / "state.json"
        self.certs = self.dir / "certs"
        self.binaries = {"operator": str(build.binary_path(build.KEDA_OPERATOR_BINARY)),
                         "adapter": str(build.binary_path(build.KEDA_ADAPTER_BINARY)),
                         "bridge": sys.executable}

    # -- helpers -------------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([self.cluster.bin("kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), *args],
                             input=stdin, capture_output=True, text=True, timeout=180)
        if check and out.returncode != 0:
            raise KedaError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def _apply(self, objects: list[dict]) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=mlplatform-e2e-keda",
                     "-f", "-", stdin=yaml.safe_dump_all(objects))

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def netns(self) -> netns.Netns:
        return netns.for_run_dir(self.cluster.run)

    def crds(self) -> list[dict]:
        return crds(self.version)

    def crd_names(self) -> list[str]:
        return [f"{c['spec']['names']['plural']}.{c['spec']['group']}" for c in self.crds()]

    def _alive(self, process: str, pid: int | None) -> bool:
        return (bool(pid) and cluster._proc_exe(pid) == self.binaries[process]
                and cluster._proc_state(pid) not in ("Z", "X"))

    def apiservice_available(self) -> bool:
        out = self.kubectl("get", "apiservice", APISERVICE, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Available')].status}", check=False)
        return out.returncode == 0 and out.stdout.strip() == "True"

    def running(self) -> bool:
        """Every process is ours and alive, the operator is healthy, and the APIService is Available."""
        st = self.state()
        pids = st.get("pids") or {}
        return (all(self._alive(p, pids.get(p)) for p in PROCESSES)
                and cluster.http_ok(f"http://127.0.0.1:{st['ports']['health']}/readyz")
                and self.apiservice_available())

    def log_tail(self, process: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.dir / f"{process}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- lifecycle -----------------------------------------------------------------------------------

    def up(self, timeout: float = 180) -> dict:
        """Build if needed, install and start; idempotent. Returns its state (pids, ports, figures)."""
        if self.running():
            return self.state()
        self.down(remove_crds=False)
        t0 = time.monotonic()
        wanted = {build.KEDA_OPERATOR_BINARY, build.KEDA_ADAPTER_BINARY}
        if wanted & {c.name for c in build.missing(with_tools=True)}:
            build.build(with_tools=True)
        figures: dict = {"build_seconds": round(time.monotonic() - t0, 1)}
        t = time.monotonic()
        restarted = [name for name, flags in (("kube-apiserver", cluster.APISERVER_AGGREGATION_FLAGS),
                                              ("kube-controller-manager", cluster.HPA_FLAGS))
                     if self.cluster.ensure_flags(name, flags)]
        if restarted:
            figures["restarted_with_flags"] = restarted
            figures["restart_seconds"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        self.kubectl("create", "namespace", NAMESPACE, check=False)
        crds = self.crds()
        for crd in crds:
            crd.setdefault("metadata", {}).setdefault("labels", {})["app.kubernetes.io/part-of"] = "keda-operator"
        self._apply(crds)
        names = [f"crd/{n}" for n in self.crd_names()]
        deadline = time.monotonic() + 90
        while self.kubectl("wait", "--for=condition=Established", "--timeout=30s", *names, check=False).returncode:
            if time.monotonic() > deadline:
                raise KedaError(f"KEDA CRDs not Established within 90s: {names}")
            time.sleep(0.5)
        figures["crd_seconds"] = round(time.monotonic() - t, 1)

        ns = self.netns()
        netns.create(ns)
        pki = self.cluster.run / "pki"
        components.issue_serving_cert(pki, self.certs, "keda",
                                      dns=(f"{SERVICE}.{NAMESPACE}.svc", f"{SERVICE}.{NAMESPACE}.svc.cluster.local",
                                           f"keda-operator.{NAMESPACE}.svc"),
                                      ips=(ns.inside_ip,), client=True)
        shutil.copyfile(pki / "ca.crt", self.certs / "ca.crt")  # the gRPC pair's CA (mutual TLS)
        ports = {"health": cluster.free_port(), "metrics": cluster.free_port(), "grpc": cluster.free_port()}
        while len(set(ports.values())) < len(ports):
            ports = {k: cluster.free_port() for k in ports}
        api_port = cluster.State.load(self.cluster.run).ports["apiserver"]
        kubeconfig = str(self.cluster.kubeconfig)
        env = {**os.environ, "KUBECONFIG": kubeconfig, "POD_NAMESPACE": NAMESPACE, "WATCH_NAMESPACE": "",
               "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
               "KEDA_HTTP_DEFAULT_TIMEOUT": "3000"}
        argv = {
            "bridge": [sys.executable, str(HERE / "netns.py"), "bridge", ns.name, str(api_port), str(ports["grpc"])],
            "operator": [self.binaries["operator"], "--leader-elect=false", "--enable-cert-rotation=false",
                         f"--cert-dir={self.certs}", f"--ca-dir={self.certs}",
                         f"--health-probe-bind-address=127.0.0.1:{ports['health']}",
                         f"--metrics-bind-address=127.0.0.1:{ports['metrics']}",
                         f"--metrics-service-bind-address=127.0.0.1:{ports['grpc']}",
                         "--zap-log-level=info", "--zap-encoder=console"],
            "adapter": [*netns.exec_prefix(ns), self.binaries["adapter"],
                        f"--secure-port={ADAPTER_PORT}", f"--bind-address={ns.inside_ip}",
                        f"--cert-dir={self.certs}", f"--tls-cert-file={self.certs / 'tls.crt'}",
                        f"--tls-private-key-file={self.certs / 'tls.key'}", f"--client-ca-file={pki / 'ca.crt'}",
                        f"--kubeconfig={kubeconfig}", f"--lister-kubeconfig={kubeconfig}",
                        f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                        f"--metrics-service-address=127.0.0.1:{ports['grpc']}",
                        f"--port={ADAPTER_METRICS_PORT}", "--zap-log-level=info", "--zap-encoder=console"],
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        st = {"pids": {}, "ports": ports, "netns": ns.to_json(), "version": self.version}
        deadline = time.monotonic() + timeout
        t = time.monotonic()
        for process in PROCESSES:
            logf = open(self.dir / f"{process}.log", "ab")
            proc = subprocess.Popen(argv[process], stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, cwd=self.dir)
            logf.close()
            st["pids"][process] = proc.pid
            self.state_path.write_text(json.dumps(st))
            if process == "bridge":
                self._wait(proc, process, deadline, lambda: b"bridging" in (self.dir / "bridge.log").read_bytes())
            elif process == "operator":
                self._wait(proc, process, deadline,
                           lambda: cluster.http_ok(f"http://127.0.0.1:{ports['health']}/readyz"))
                figures["seconds_to_operator_ready"] = round(time.monotonic() - t, 1)
        self._apply(registration(ns.inside_ip, base64.b64encode((pki / "ca.crt").read_bytes()).decode()))
        self._wait(proc, "adapter", deadline, self.apiservice_available)
        figures["seconds_to_apiservice_available"] = round(time.monotonic() - t, 1)
        figures["up_seconds"] = round(time.monotonic() - t0, 1)
        st["figures"] = figures
        self.state_path.write_text(json.dumps(st))
        print(f"[keda] {self.version} running (pids {st['pids']}, metrics API server at {ns.inside_ip}:{ADAPTER_PORT} "
              f"in netns {ns.name}): {json.dumps(figures)}", file=sys.stderr, flush=True)
        return st

    def _wait(self, proc: subprocess.Popen, process: str, deadline: float, check) -> None:
        while not check():
            if proc.poll() is not None:
                raise KedaError(f"keda {process} exited with {proc.returncode}:\n{self.log_tail(process)}")
            if time.monotonic() > deadline:
                raise KedaError(f"keda {process} not ready in time:\n{self.log_tail(process)}")
            time.sleep(0.3)

    def down(self, remove_crds: bool = True) -> None:
        """The APIService, then (remove_crds) the CRDs and their objects, then the processes and the namespace."""
        if self.cluster.kubeconfig.exists() and self.cluster.is_running():
            self.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
            if remove_crds:
                self._remove_crds()
        pids = self.state().get("pids") or {}
        for process in reversed(PROCESSES):
            pid = pids.get(process)
            if not self._alive(process, pid):
                continue
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not self._alive(process, pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        ns = self.netns()
        for pid in netns.pids_inside(ns):  # only ours can be there: the namespace is this run folder's
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        netns.delete(ns)
        self.state_path.unlink(missing_ok=True)

    def _remove_crds(self) -> None:
        present = [c for c in self.crd_names() if self.kubectl("get", "crd", c, check=False).returncode == 0]
        if not present:
            return
        for crd in present:  # no operator is left to clear its finalizers
            items = self.kubectl("get", crd, "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}"
                                 "/{.metadata.name}{\"\\n\"}{end}", check=False).stdout.split()
            for item in items:
                namespace, obj = item.split("/", 1)
                self.kubectl("patch", crd, obj, *(["-n", namespace] if namespace else []), "--type=merge",
                             "-p", '{"metadata":{"finalizers":null}}', check=False)
        self.kubectl("delete", "crd", *present, "--ignore-not-found", "--timeout=90s", check=False)
