#!/usr/bin/env python3
"""A real local Kubernetes control plane without Docker.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local
processes bound to 127.0.0.1; kwok plays the kubelet for simulated CPU and GPU
nodes. Binaries come from the version-keyed cache that build.py fills.

    cluster.py build        build missing binaries into the cache
    cluster.py up           start (or find running) and wait until usable
    cluster.py down         stop every process it started, by PID
    cluster.py status       show processes, ports and health
    cluster.py kubeconfig   print the admin kubeconfig path (only)

Run state (PKI, etcd data, logs, pids, kubeconfigs) lives in ``--run-dir``
(env ``MLPLATFORM_CLUSTER_DIR``, default ``<repo>/.run/cluster``).
Depends on the standard library and ``cryptography`` only.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402
import versions  # noqa: E402

REPO = HERE.parents[1]
DEFAULT_RUN_DIR = REPO / ".run" / "cluster"
STAGES_DIR = HERE / "stages"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
CONTROLLER_MANAGER_QPS = 100  # client requests/s of kube-controller-manager (default 20)
# The aggregation layer (KEDA's external metrics API) reaches an APIService's endpoints directly: there is no
# kube-proxy to carry a Service's cluster IP.
APISERVER_AGGREGATION_FLAGS = ("--enable-aggregator-routing=true",)
# The HPA controller (inside kube-controller-manager) reads metrics every 2 s (default 15 s) and scales down
# after 10 s of lower recommendations (default 5 min), so autoscaling tests take seconds. An HPA's own
# behavior.scaleDown.stabilizationWindowSeconds still overrides the latter.
HPA_FLAGS = ("--horizontal-pod-autoscaler-sync-period=2s", "--horizontal-pod-autoscaler-downscale-stabilization=10s")
KWOK_NODE_IP = "10.240.0.1"
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
CLUSTER_NAME = "mlplatform-local"
PKI_MARKER = "complete-v2"  # bump when ensure_pki() adds files, to regenerate
# Start order; stop runs in reverse.
ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


class ClusterError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


def resolve_run_dir(run_dir: str | os.PathLike | None = None) -> Path:
    raw = run_dir or os.environ.get("MLPLATFORM_CLUSTER_DIR") or DEFAULT_RUN_DIR
    return Path(raw).expanduser().resolve()


# --------------------------------------------------------------------------- nodes

GIB = 1024 ** 3


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: int
    memory: str
    instance_type: str
    gpus: int = 0
    gpu_product: str = ""
    pods: int = 110
    ip: str = ""
    zone: str = ""

    def labels(self) -> dict[str, str]:
        """The labels `up` sets, also on the nodes of a cluster started by an older checkout."""
        return {"topology.kubernetes.io/zone": self.zone, "topology.kubernetes.io/region": REGION} if self.zone else {}

    def manifest(self) -> dict:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": self.instance_type,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            "type": "kwok",
            **self.labels(),
        }
        capacity = {"cpu": str(self.cpu), "memory": self.memory, "pods": str(self.pods),
                    "ephemeral-storage": "1Ti"}
        taints = []
        if self.gpus:
            labels.update({
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.gpu_product,
                "nvidia.com/gpu.count": str(self.gpus),
            })
            capacity["nvidia.com/gpu"] = str(self.gpus)
            taints.append({"key": "nvidia.com/gpu", "effect": "NoSchedule"})
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                                "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": capacity, "allocatable": dict(capacity),
                       "addresses": [{"type": "InternalIP", "address": self.ip},
                                     {"type": "Hostname", "address": self.name}]},
        }


DEFAULT_CPU_NODES = 3
# Simulated zones (topology spread of model pods): nodes take them in turn, by their index within their kind.
ZONES = ("zone-a", "zone-b", "zone-c")
REGION = "local"


def zone(i: int) -> str:
    return ZONES[i % len(ZONES)]
MAX_CPU_NODES = 500


def cpu_node(i: int) -> NodeSpec:
    # 400 pods per CPU node (kubelet's default is 110): room for scale benchmarks.
    return NodeSpec(f"kwok-cpu-{i}", 32, "128Gi", "cpu-32", pods=400, ip=f"10.241.{i // 250}.{10 + i % 250}",
                    zone=zone(i))


def node_specs(cpu_nodes: int = DEFAULT_CPU_NODES) -> list[NodeSpec]:
    """The simulated nodes: cpu_nodes CPU nodes, 4 H100 nodes (8 GPUs each), 1 L4 node (4 GPUs)."""
    return ([cpu_node(i) for i in range(cpu_nodes)]
            + [NodeSpec(f"kwok-h100-{i}", 96, "1000Gi", "gpu-h100x8", 8, "NVIDIA-H100-80GB-HBM3",
                        ip=f"10.240.0.{20 + i}", zone=zone(i)) for i in range(4)]
            + [NodeSpec("kwok-l4-0", 48, "192Gi", "gpu-l4x4", 4, "NVIDIA-L4", ip="10.240.0.30", zone=zone(1))])



def cpu_nodes_wanted(requested: int | None) -> int | None:
    """--cpu-nodes, else MLPLATFORM_CPU_NODES (make cluster CPU_NODES=N), else None (keep what runs)."""
    raw = requested if requested is not None else os.environ.get("MLPLATFORM_CPU_NODES") or None
    if raw is None:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise ClusterError(f"CPU_NODES: found {raw!r}; allowed: a whole number from 1 to {MAX_CPU_NODES}") from None
    if not 1 <= n <= MAX_CPU_NODES:
        raise ClusterError(f"CPU_NODES: found {n}; allowed: 1 to {MAX_CPU_NODES}")
    return n


# --------------------------------------------------------------------------- PKI

def _pki(run: Path) -> Path:
    return run / "pki"


def ensure_pki(run: Path) -> None:
    """CA, apiserver serving cert, client certs and the service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = _pki(run)
    if (pki / PKI_MARKER).exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)

    def write_key(path: Path, key) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def new_ca(stem: str, cn: str):
        """A self-signed CA, written to <stem>.key / <stem>.crt."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_key(pki / f"{stem}.key", key)
        (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    ca_key, ca_cert = new_ca("ca", "mlplatform-local-ca")

    def issue(stem: str, cn: str, org: str | None, server: bool, client: bool,
              dns: list[str] = (), ips: list[str] = (), signer=None) -> None:
        sign_key, sign_cert = signer or (ca_key, ca_cert)
        key = ec.generate_private_key(ec.SECP256R1())
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn, org))
            .issuer_name(sign_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                sign_key.public_key()), critical=False)
        )
        if dns or ips:
            sans = [x509.DNSName(d) for d in dns] + \
                   [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(sign_key, hashes.SHA256())
        write_key(pki / f"{stem}.key", key)
        (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    issue("apiserver", "kube-apiserver", None, server=True, client=False,
          dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local"],
          ips=["127.0.0.1", service_ip])
    issue("admin", "admin", "system:masters", server=False, client=True)
    issue("kube-controller-manager", "system:kube-controller-manager", None,
          server=False, client=True)
    issue("kube-scheduler", "system:kube-scheduler", None, server=False, client=True)
    issue("kwok", "kwok-controller", "system:masters", server=False, client=True)

    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(pki / "sa.key", sa)
    (pki / "sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    # Front proxy (aggregation layer request headers), so the apiserver can
    # serve aggregated APIs such as metrics-server if one is installed.
    fp_key, fp_ca = new_ca("front-proxy-ca", "mlplatform-front-proxy-ca")
    issue("front-proxy-client", "front-proxy-client", None, server=False, client=True,
          signer=(fp_key, fp_ca))
    (pki / PKI_MARKER).write_text("ok\n")


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {
            "server": server, "certificate-authority-data": b64(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(pki / f"{user}.crt"),
            "client-key-data": b64(pki / f"{user}.key")}}],
        "contexts": [{"name": CLUSTER_NAME, "context": {
            "cluster": CLUSTER_NAME, "user": user, "namespace": "default"}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    # JSON is valid YAML; every kubeconfig reader accepts it.
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this host (all addresses), from /proc/net/tcp*."""
    ports: set[int] = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _proc_exe(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


@dataclass
class Proc:
    name: str
    pid: int
    exe: str
    start_time: str | None
    argv: list[str] = field(default_factory=list)  # to restart it alone with the same flags

    def alive(self) -> bool:
        """True while this very process (not a recycled PID) is running."""
        state = _proc_state(self.pid)
        if state is None or state in ("Z", "X"):
            return False
        return _proc_exe(self.pid) == self.exe and _proc_start_time(self.pid) == self.start_time

    def to_json(self) -> dict:
        return {"name": self.name, "pid": self.pid, "exe": self.exe,
                "start_time": self.start_time, "argv": self.argv}


@dataclass
class State:
    run: Path
    bin_dir: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    cpu_nodes: int = DEFAULT_CPU_NODES

    @property
    def path(self) -> Path:
        return self.run / "state.json"

    @classmethod
    def load(cls, run: Path) -> "State":
        st = cls(run)
        try:
            data = json.loads(st.path.read_text())
        except (OSError, ValueError):
            return st
        st.bin_dir = data.get("bin_dir", "")
        st.ports = {k: int(v) for k, v in data.get("ports", {}).items()}
        st.procs = {p["name"]: Proc(**p) for p in data.get("procs", [])}
        st.cpu_nodes = int(data.get("cpu_nodes", DEFAULT_CPU_NODES))
        return st

    def save(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "bin_dir": self.bin_dir,
            "ports": self.ports,
            "procs": [self.procs[n].to_json() for n in ORDER if n in self.procs],
            "cpu_nodes": self.cpu_nodes,
        }, indent=2) + "\n")
        os.replace(tmp, self.path)
        pids = self.run / "pids"
        pids.mkdir(exist_ok=True)
        for f in pids.glob("*.pid"):
            if f.stem not in self.procs:
                f.unlink()
        for p in self.procs.values():
            (pids / f"{p.name}.pid").write_text(f"{p.pid}\n")


def log_tail(run: Path, name: str, lines: int = 30) -> str:
    try:
        text = (run / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def start_process(st: State, name: str, argv: list[str]) -> Proc:
    logs = st.run / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logf = open(logs / f"{name}.log", "ab", buffering=0)
    logf.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
               f"{' '.join(argv)}\n".encode())
    import subprocess
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                         cwd=st.run, start_new_session=True, close_fds=True)
    logf.close()
    # Give /proc a moment to show the exec'ed binary.
    for _ in range(50):
        if _proc_exe(p.pid) == argv[0] or p.poll() is not None:
            break
        time.sleep(0.01)
    proc = Proc(name, p.pid, argv[0], _proc_start_time(p.pid), list(argv))
    st.procs[name] = proc
    st.save()
    # The Popen object is dropped without wait(); reap it later if it dies while we wait.
    _children[p.pid] = p
    return proc


_children: dict[int, object] = {}


def stop_process(proc: Proc, timeout: float = 15.0) -> None:
    if not proc.alive():
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _children.get(proc.pid)
        if child is not None:
            child.poll()  # reap if it is our own child
        if not proc.alive():
            return
        time.sleep(0.05)
    log(f"{proc.name} (pid {proc.pid}) did not stop on SIGTERM; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.alive():
        child = _children.get(proc.pid)
        if child is not None:
            child.poll()
        time.sleep(0.05)


# --------------------------------------------------------------------------- HTTP

class Api:
    """Tiny JSON client for the apiserver using the admin client certificate."""

    def __init__(self, run: Path, port: int):
        pki = _pki(run)
        self.base = f"https://127.0.0.1:{port}"
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def request(self, method: str, path: str, body: dict | None = None,
                timeout: float = 10) -> tuple[int, dict | str]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/merge-patch+json" if method == "PATCH" else "application/json")
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                raw = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read().decode(errors="replace")
            status = e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw


def http_ok(url: str, timeout: float = 2.0, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _insecure_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_for(what: str, check, timeout: float, st: State, watch: list[str],
             interval: float = 0.2) -> float:
    """Poll check() until true; fail early with the log tail if a watched process died."""
    t0 = time.monotonic()
    while True:
        for name in watch:
            proc = st.procs.get(name)
            if proc is not None:
                child = _children.get(proc.pid)
                if child is not None:
                    child.poll()
                if not proc.alive():
                    raise ClusterError(f"{name} exited while waiting for {what}; "
                                       f"last lines of {st.run / 'logs' / (name + '.log')}:\n"
                                       f"{log_tail(st.run, name)}")
        try:
            if check():
                return time.monotonic() - t0
        except (OSError, ValueError, ssl.SSLError, urllib.error.URLError):
            pass
        if time.monotonic() - t0 > timeout:
            tails = "\n".join(f"--- {n} ---\n{log_tail(st.run, n, 15)}" for n in watch)
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(interval)


# --------------------------------------------------------------------------- audit

AUDIT_LOG = "logs/audit.log"
# Writes by clients other than the control plane's own components, at Metadata level: tests count
# an operator's writes in it (by user agent), not from the operator's own metrics.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
# ServiceAccounts of mlplatform-system, the install's namespace: the operator authenticated as the
# chart's ServiceAccount (e2e/test_rbac.py). Every request, reads too, so that no 403 goes unseen.
- level: Metadata
  userGroups: ["system:serviceaccounts:mlplatform-system"]
- level: None
  verbs: [get, list, watch]
- level: None
  users: [system:kube-controller-manager, system:kube-scheduler, kwok-controller]
- level: None
  userGroups: [system:serviceaccounts, system:nodes]
- level: Metadata
"""


def write_audit_policy(run: Path) -> Path:
    path = run / "audit-policy.yaml"
    path.write_text(AUDIT_POLICY)
    return path


# --------------------------------------------------------------------------- cluster

class Cluster:
    def __init__(self, run_dir: str | os.PathLike | None = None):
        self.run = resolve_run_dir(run_dir)

    # paths --------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.run / "kubeconfig"

    def bin(self, name: str) -> str:
        return str(build.cache_dir() / name)

    @contextlib.contextmanager
    def lock(self):
        self.run.mkdir(parents=True, exist_ok=True)
        with open(self.run / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another cluster.py holding {self.run / '.lock'}")
                fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # health -------------------------------------------------------------
    def _running(self, st: State) -> bool:
        if not st.procs or any(n not in st.procs or not st.procs[n].alive() for n in ORDER):
            return False
        try:
            status, body = Api(self.run, st.ports["apiserver"]).request("GET", "/readyz",
                                                                         timeout=5)
        except (OSError, KeyError, ssl.SSLError, urllib.error.URLError):
            return False
        return status == 200

    def is_running(self) -> bool:
        return self._running(State.load(self.run))

    # up -----------------------------------------------------------------
    def up(self, build_missing: bool = True, cpu_nodes: int | None = None) -> Path:
        """Start the cluster, or keep the running one: a component found dead is restarted alone
        (etcd's data kept); cpu_nodes (or MLPLATFORM_CPU_NODES) adds CPU nodes to a running cluster."""
        t0 = time.monotonic()
        wanted_cpu_nodes = cpu_nodes_wanted(cpu_nodes)
        with self.lock():
            st = State.load(self.run)
            dead = [n for n in ORDER if n in st.procs and not st.procs[n].alive()]
            if dead and len(dead) < len(st.procs) and all(st.procs[n].argv for n in dead):
                log(f"{', '.join(dead)} not running; restarting {'it' if len(dead) == 1 else 'them'} "
                    "with the same flags (etcd's data kept)")
                self._restart(st, dead)
            if not dead and self._running(st):
                log(f"already running (apiserver https://127.0.0.1:{st.ports['apiserver']}); "
                    f"kubeconfig {self.kubeconfig}")
            if self._running(st) and all(p.alive() for p in st.procs.values()):
                if wanted_cpu_nodes is not None and wanted_cpu_nodes > st.cpu_nodes:
                    self._add_cpu_nodes(st, wanted_cpu_nodes, t0)
                self._label_nodes(st)
                return self.kubeconfig
            if any(p.alive() for p in st.procs.values()):
                log("found a partly running cluster that cannot be restarted in place; stopping it first")
                self._down(st)
            if not build.have_all():
                if not build_missing:
                    raise ClusterError(f"binaries missing in {build.cache_dir()}; run build")
                build.build(log=lambda m: print(m, file=sys.stderr, flush=True))
            st = State(self.run, bin_dir=str(build.cache_dir()),
                       cpu_nodes=wanted_cpu_nodes or DEFAULT_CPU_NODES)
            try:
                self._up(st, t0)
            except BaseException:
                log("start failed; stopping the components already started")
                self._down(st)
                raise
            return self.kubeconfig

    def _pick_ports(self, previous: dict[str, int]) -> dict[str, int]:
        names = ["etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler",
                 "kwok"]
        ports: dict[str, int] = {}
        used = listening_ports()
        for n in names:
            p = previous.get(n)
            # Keep the previous ports when free, so the kubeconfig stays the same.
            if p and p not in used and p not in ports.values() and port_free(p):
                ports[n] = p
                continue
            while True:
                p = free_port()
                if p not in ports.values():
                    ports[n] = p
                    break
        return ports

    def _up(self, st: State, t0: float) -> None:
        run = self.run
        run.mkdir(parents=True, exist_ok=True)
        ensure_pki(run)
        pki = _pki(run)
        old = State.load(run)
        st.ports = self._pick_ports(old.ports)
        st.procs = {}
        st.save()
        P = st.ports
        server = f"https://127.0.0.1:{P['apiserver']}"
        for user in ("admin", "kube-controller-manager", "kube-scheduler", "kwok"):
            name = "kubeconfig" if user == "admin" else f"{user}.kubeconfig"
            write_kubeconfig(run / name, server, pki, user)

        def step(msg: str) -> None:
            log(f"{msg} ({time.monotonic() - t0:.1f}s)")

        # etcd: a fresh data dir each start, so every `up` is a clean cluster.
        etcd_data = run / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)
        etcd_url = f"http://127.0.0.1:{P['etcd-client']}"
        peer_url = f"http://127.0.0.1:{P['etcd-peer']}"
        start_process(st, "etcd", [
            self.bin("etcd"),
            "--name=mlplatform",
            f"--data-dir={etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=mlplatform={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ])
        wait_for("etcd /health", lambda: http_ok(f"{etcd_url}/health"), 30, st, ["etcd"])
        step("etcd ready")

        start_process(st, "kube-apiserver", [
            self.bin("kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={P['apiserver']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            # No kubelets or real endpoints: do not try to publish 127.0.0.1 as the
            # `kubernetes` service endpoint (loopback addresses are invalid there).
            "--endpoint-reconciler-type=none",
            f"--audit-policy-file={write_audit_policy(run)}",
            f"--audit-log-path={run / AUDIT_LOG}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",
            "--audit-log-maxbackup=1",
            # On SIGTERM, stop waiting for open watches after 2 s (the default waits for the
            # HTTP server's 60 s shutdown timeout: longer than a node's grace period).
            "--shutdown-watch-termination-grace-period=2s",
            *APISERVER_AGGREGATION_FLAGS,
            "--profiling=false",
            "--v=0",
        ])
        api = Api(run, P["apiserver"])
        wait_for("kube-apiserver /readyz", lambda: api.request("GET", "/readyz")[0] == 200,
                 120, st, ["etcd", "kube-apiserver"])
        step("kube-apiserver ready")

        kcm_kc = run / "kube-controller-manager.kubeconfig"
        start_process(st, "kube-controller-manager", [
            self.bin("kube-controller-manager"),
            f"--kubeconfig={kcm_kc}",
            f"--authentication-kubeconfig={kcm_kc}",
            f"--authorization-kubeconfig={kcm_kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={P['controller-manager']}",
            f"--cert-dir={run / 'kube-controller-manager'}",
            "--leader-elect=false",
            "--controllers=*",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Its default client rate (20/s, burst 30) is shared by each controller's creates and Events: the
            # ReplicaSet controller then makes ~8 pods/s, so every workload waits on it behind a burst.
            f"--kube-api-qps={CONTROLLER_MANAGER_QPS}",
            f"--kube-api-burst={2 * CONTROLLER_MANAGER_QPS}",
            *HPA_FLAGS,
            "--profiling=false",
            "--v=0",
        ])
        sched_kc = run / "kube-scheduler.kubeconfig"
        start_process(st, "kube-scheduler", [
            self.bin("kube-scheduler"),
            f"--kubeconfig={sched_kc}",
            f"--authentication-kubeconfig={sched_kc}",
            f"--authorization-kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={P['scheduler']}",
            f"--cert-dir={run / 'kube-scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=0",
        ])
        stage_files = sorted(STAGES_DIR.glob("*.yaml"))
        if not stage_files:
            raise ClusterError(f"no kwok stages in {STAGES_DIR}")
        start_process(st, "kwok", [
            self.bin("kwok"),
            f"--kubeconfig={run / 'kwok.kubeconfig'}",
            *[f"--config={f}" for f in stage_files],
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
            f"--server-address=127.0.0.1:{P['kwok']}",
            f"--cidr={POD_CIDR}",
            f"--node-ip={KWOK_NODE_IP}",
            "--node-lease-duration-seconds=40",
        ])
        all_procs = list(ORDER)
        checks = self._health_checks(st)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            wait_for(f"{name} healthy", checks[name], 60, st, all_procs)
            step(f"{name} healthy")

        nodes = node_specs(st.cpu_nodes)
        self._create_nodes(api, nodes)
        step(f"created {len(nodes)} simulated nodes ({st.cpu_nodes} CPU)")

        def sa_exists() -> bool:
            return api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
        wait_for("the default service account", sa_exists, 60, st, all_procs)
        step("default service account exists")

        self._wait_nodes_ready(st, nodes, 90)
        step(f"{len(nodes)} nodes Ready")

        probe = f"mlplatform-probe-{uuid.uuid4().hex[:6]}"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": probe, "labels": {"app": "mlplatform-probe"}},
            "spec": {"containers": [{"name": "probe", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": "10m",
                                                                "memory": "16Mi"}}}],
                     "terminationGracePeriodSeconds": 0},
        }
        status, body = api.request("POST", "/api/v1/namespaces/default/pods", pod)
        if status != 201:
            raise ClusterError(f"creating probe pod: HTTP {status}: {body}")

        def probe_running() -> bool:
            status, body = api.request("GET", f"/api/v1/namespaces/default/pods/{probe}")
            return status == 200 and body.get("status", {}).get("phase") == "Running"
        wait_for("probe pod Running", probe_running, 90, st, all_procs, interval=0.3)
        api.request("DELETE", f"/api/v1/namespaces/default/pods/{probe}")
        step("probe pod Running (scheduled and started by kwok)")
        import gateway_api  # e2e/controlplane/gateway_api.py: the Gateway API standard CRDs
        gateway_api.install(self.bin("kubectl"), str(self.kubeconfig))
        step(f"Gateway API {versions.GATEWAY_API} standard CRDs installed")
        log(f"cluster up in {time.monotonic() - t0:.1f}s: {server}")
        log(f"kubeconfig: {self.kubeconfig}")

    def _health_checks(self, st: State) -> dict:
        """name -> a check that is true once that component serves."""
        P, ins = st.ports, _insecure_ctx()
        api = Api(self.run, P["apiserver"])
        return {
            "etcd": lambda: http_ok(f"http://127.0.0.1:{P['etcd-client']}/health"),
            "kube-apiserver": lambda: api.request("GET", "/readyz")[0] == 200,
            "kube-controller-manager": lambda: http_ok(f"https://127.0.0.1:{P['controller-manager']}/healthz",
                                                       ctx=ins),
            "kube-scheduler": lambda: http_ok(f"https://127.0.0.1:{P['scheduler']}/healthz", ctx=ins),
            "kwok": lambda: http_ok(f"http://127.0.0.1:{P['kwok']}/healthz"),
        }

    def _restart(self, st: State, dead: list[str]) -> None:
        """Start the dead components again with their recorded flags, in start order."""
        checks = self._health_checks(st)
        for name in ORDER:
            if name in dead:
                start_process(st, name, st.procs[name].argv)
                wait_for(f"{name} healthy", checks[name], 120, st, [name])
                log(f"restarted {name} (pid {st.procs[name].pid})")
        self._wait_nodes_ready(st, node_specs(st.cpu_nodes), 120)

    @staticmethod
    def _create_nodes(api: "Api", nodes: list[NodeSpec]) -> None:
        for n in nodes:
            status, body = api.request("POST", "/api/v1/nodes", n.manifest())
            if status not in (201, 409):
                raise ClusterError(f"creating node {n.name}: HTTP {status}: {body}")

    def _wait_nodes_ready(self, st: State, nodes: list[NodeSpec], timeout: float) -> None:
        api, names = Api(self.run, st.ports["apiserver"]), {n.name for n in nodes}

        def nodes_ready() -> bool:
            status, body = api.request("GET", "/api/v1/nodes")
            if status != 200:
                return False
            ready = set()
            for item in body["items"]:
                conds = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
                taints = {t["key"] for t in item.get("spec", {}).get("taints", []) or []}
                if conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
                    ready.add(item["metadata"]["name"])
            return names <= ready
        wait_for("nodes Ready", nodes_ready, timeout, st, list(ORDER), interval=0.5)

    def _label_nodes(self, st: State) -> None:
        """Zone labels on the nodes of a cluster started before nodes had them."""
        api = Api(self.run, st.ports["apiserver"])
        status, body = api.request("GET", "/api/v1/nodes")
        if status != 200:
            return
        have = {item["metadata"]["name"]: item["metadata"].get("labels") or {} for item in body["items"]}
        for n in node_specs(st.cpu_nodes):
            wanted = n.labels()
            if n.name in have and any(have[n.name].get(k) != v for k, v in wanted.items()):
                api.request("PATCH", f"/api/v1/nodes/{n.name}", {"metadata": {"labels": wanted}})

    def ensure_flags(self, name: str, flags: tuple[str, ...]) -> bool:
        """Restart one running component with `flags` added when its command line lacks any of them (a cluster
        started by an older checkout). True when it was restarted."""
        with self.lock():
            st = State.load(self.run)
            proc = st.procs[name]
            argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            names = {f.split("=", 1)[0] for f in flags}
            if all(f in argv for f in flags):
                return False
            argv = [a for a in argv if a.split("=", 1)[0] not in names] + list(flags)
            stop_process(proc)
            start_process(st, name, argv)
            wait_for(f"{name} healthy", self._health_checks(st)[name], 120, st, [name])
            log(f"restarted {name} with {' '.join(flags)}")
            return True

    def _add_cpu_nodes(self, st: State, cpu_nodes: int, t0: float) -> None:
        added = [cpu_node(i) for i in range(st.cpu_nodes, cpu_nodes)]
        self._create_nodes(Api(self.run, st.ports["apiserver"]), added)
        st.cpu_nodes = cpu_nodes
        st.save()
        self._wait_nodes_ready(st, added, 120)
        log(f"added {len(added)} CPU nodes ({cpu_nodes} in all) in {time.monotonic() - t0:.1f}s")

    # down ---------------------------------------------------------------
    def down(self) -> None:
        if not self.run.exists():
            log(f"nothing to stop ({self.run} does not exist)")
            return
        self._stop_components()
        with self.lock():
            st = State.load(self.run)
            if not st.procs:
                log("nothing running")
            self._down(st)

    def _stop_components(self) -> None:
        """The extra components started on this cluster (components.py: Kueue, LWS, KEDA, Prometheus): their
        processes (and KEDA's network namespace) would outlive it. Their CRDs stay in etcd, as everything else does."""
        import components  # e2e/controlplane/components.py (it imports this module)

        for name in components.NAMES:
            if (self.run / name / "state.json").exists():
                components.runner(name, self.run).down(remove_crds=False)
                log(f"stopped {name}")

    def _down(self, st: State) -> None:
        for name in reversed(ORDER):
            proc = st.procs.get(name)
            if proc is None:
                continue
            if proc.alive():
                stop_process(proc)
                log(f"stopped {name} (pid {proc.pid})")
            st.procs.pop(name, None)
            st.save()
        leftover = [p for p in st.ports.values() if p in listening_ports()]
        if leftover:
            log(f"warning: ports still listening after stop: {leftover}")
        st.procs = {}
        st.save()

    # status -------------------------------------------------------------
    def status(self) -> dict:
        st = State.load(self.run)
        procs = {n: {"pid": p.pid, "alive": p.alive()} for n, p in st.procs.items()}
        info = {"run_dir": str(self.run), "bin_dir": str(build.cache_dir()),
                "ports": st.ports, "processes": procs,
                "kubeconfig": str(self.kubeconfig), "running": self._running(st)}
        return info

    def pids(self) -> dict[str, int]:
        st = State.load(self.run)
        return {n: p.pid for n, p in st.procs.items() if p.alive()}

    @property
    def audit_log(self) -> Path:
        return self.run / AUDIT_LOG

    def restart_apiserver(self) -> float:
        """Stop kube-apiserver and start it again with the same flags (every watch is cut; its watch
        cache starts over). Returns the seconds until it was ready again."""
        t0 = time.monotonic()
        with self.lock():
            st = State.load(self.run)
            proc = st.procs["kube-apiserver"]
            argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            stop_process(proc)
            start_process(st, "kube-apiserver", argv)
            api = Api(self.run, st.ports["apiserver"])
            wait_for("kube-apiserver /readyz", lambda: api.request("GET", "/readyz")[0] == 200,
                     120, st, ["etcd", "kube-apiserver"])
        return time.monotonic() - t0

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision: a watch or list continuing from an
        older resourceVersion then gets 410 Gone. Returns the revision compacted to."""
        st = State.load(self.run)
        url = f"http://127.0.0.1:{st.ports['etcd-client']}/v3/kv"

        def post(path: str, body: dict) -> dict:
            req = urllib.request.Request(f"{url}/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as rsp:
                return json.loads(rsp.read())

        revision = int(post("range", {"key": "AA=="})["header"]["revision"])
        post("compaction", {"revision": str(revision), "physical": True})
        return revision


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", help="run state folder (env MLPLATFORM_CLUSTER_DIR; "
                                      f"default {DEFAULT_RUN_DIR})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build missing binaries into the cache")
    b.add_argument("--force", action="store_true", help="rebuild everything")
    b.add_argument("--with-tools", action="store_true",
                   help="also the tools only some tests need (build.tools(): kstatus, promtool, ...)")
    up = sub.add_parser("up", help="start the control plane (idempotent; restarts a dead component alone)")
    up.add_argument("--cpu-nodes", type=int, help=f"simulated CPU nodes, 400 pods each (default "
                    f"{DEFAULT_CPU_NODES}, env MLPLATFORM_CPU_NODES; a running cluster gets the missing ones)")
    sub.add_parser("down", help="stop every process started by up")
    sub.add_parser("status", help="show processes and health")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    sub.add_parser("bin-dir", help="print the binary cache folder")
    args = ap.parse_args(argv)
    c = Cluster(args.run_dir)
    try:
        if args.cmd == "build":
            build.build(force=args.force, with_tools=args.with_tools)
        elif args.cmd == "up":
            c.up(cpu_nodes=args.cpu_nodes)
        elif args.cmd == "down":
            c.down()
        elif args.cmd == "status":
            info = c.status()
            print(json.dumps(info, indent=2))
            return 0 if info["running"] else 3
        elif args.cmd == "kubeconfig":
            if not c.kubeconfig.exists():
                print(f"no kubeconfig at {c.kubeconfig}; run `make cluster`", file=sys.stderr)
                return 1
            print(c.kubeconfig)
        elif args.cmd == "bin-dir":
            print(build.cache_dir())
    except ClusterError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
