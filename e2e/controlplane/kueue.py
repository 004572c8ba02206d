#!/usr/bin/env python3
"""Kueue (sigs.k8s.io/kueue, the manager built by build.py as a tool) on the local control plane.

Started on demand by the tests that need it (e2e/kueue_fixtures.py), not by `make cluster`:

- its CRDs, from the pinned module's config/components/crd/bases (the Go module cache; `go mod download`
  puts them there), with the conversion webhook of the CRDs that have one pointed at the manager;
- a webhook serving certificate for 127.0.0.1 signed by the cluster CA (<run>/pki/kueue-webhook.*);
- the manager as a local process: webhooks served on 127.0.0.1:<free port>, internal cert management off,
  no leader election, only the batch/job integration (our TrainingJobs are Indexed Jobs);
- its Mutating/ValidatingWebhookConfigurations from config/components/webhook/manifests.yaml, kept for
  Kueue's own kinds and batch/v1 Jobs, each clientConfig rewritten from the in-cluster Service to
  url https://127.0.0.1:<port><path> with the cluster CA as caBundle.

stop() removes all of it again (webhooks first: a Job webhook with failurePolicy Fail and no server
would refuse every Job), so the tests that expect a cluster without Kueue keep passing after it.

Upstream reads the metrics server's certificate from the fixed path /etc/kueue/metrics/certs when
internal cert management is off (cmd/kueue/main.go); start() writes the webhook pair there when the
files are absent (nothing scrapes those metrics here).

    python e2e/controlplane/kueue.py up|down|status
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402
import versions  # noqa: E402

MODULE = "sigs.k8s.io/kueue"
NAMESPACE = "kueue-system"
WEBHOOK_NAMES = ("kueue-mutating-webhook-configuration", "kueue-validating-webhook-configuration")
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")  # fixed upstream when internal cert management is off
# CRDs whose versions convert through the manager's /convert (upstream: config/components/crd/patches).
CONVERTED_CRDS = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")


class KueueError(RuntimeError):
    pass


def module_dir() -> Path:
    """The pinned Kueue module's source in the Go module cache (downloaded if absent)."""
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}
    out = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{versions.KUEUE}"], cwd="/", env=env,
                         capture_output=True, text=True)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise KueueError(f"go mod download {MODULE}@{versions.KUEUE}: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def issue_serving_cert(pki: Path, stem: str) -> tuple[Path, Path]:
    """A serving certificate for 127.0.0.1/localhost signed by the cluster CA (<pki>/ca.crt, ca.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    crt, key_path = pki / f"{stem}.crt", pki / f"{stem}.key"
    if crt.exists() and key_path.exists():
        return crt, key_path
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kueue-webhook")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(ca_key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path


def configuration(webhook_port: int, health_port: int, metrics_port: int, cert_dir: Path) -> dict:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2) for a manager outside the cluster."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},
        # The on-demand visibility API server reads its certificate from the fixed path /visibility and is
        # served through the aggregation layer (an APIService): not needed here.
        "featureGates": {"VisibilityOnDemand": False},
    }


def crd_manifests(source: Path, webhook_port: int, ca_bundle: str) -> list[dict]:
    """The CRDs, with the conversion webhook (where upstream has one) at the manager's /convert."""
    crds = []
    for path in sorted((source / "config/components/crd/bases").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["plural"] in CONVERTED_CRDS:
            crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                "clientConfig": {"url": f"https://127.0.0.1:{webhook_port}/convert", "caBundle": ca_bundle},
                "conversionReviewVersions": ["v1"]}}
        crds.append(crd)
    return crds


def webhook_manifests(source: Path, webhook_port: int, ca_bundle: str) -> list[dict]:
    """Upstream's webhook configurations, kept for Kueue's kinds and batch/v1 Jobs (the integration we
    enable), each pointed at https://127.0.0.1:<port><path>."""
    out = []
    for doc in yaml.safe_load_all((source / "config/components/webhook/manifests.yaml").read_text()):
        if not doc:
            continue
        kept = []
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            if "kueue-x-k8s-io" in path or path.endswith("-batch-v1-job"):
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{webhook_port}{path}", "caBundle": ca_bundle}
                kept.append(hook)
        doc["metadata"] = {"name": f"kueue-{doc['metadata']['name']}"}
        doc["webhooks"] = kept
        out.append(doc)
    return out


class Kueue:
    """The Kueue manager of one local cluster (run dir of e2e/controlplane/cluster.py)."""

    def __init__(self, run: Path, kubectl: str):
        self.run = run
        self.dir = run / "kueue"
        self.kubeconfig = run / "kubeconfig"
        self.kubectl = kubectl
        self.state_path = self.dir / "state.json"

    # -- helpers ---------------------------------------------------------------------------------

    def _kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([self.kubectl, "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                             capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise KueueError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def _apply(self, objects: list[dict]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=self.dir, delete=False) as f:
            yaml.safe_dump_all(objects, f)
        try:
            self._kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=mlplatform-e2e-kueue",
                          "-f", f.name)
        finally:
            os.unlink(f.name)

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def pid_alive(self) -> bool:
        pid = self.state().get("pid")
        if not pid:
            return False
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False
        return Path(exe).name.startswith("kueue")

    def _healthy(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as rsp:
                return rsp.status == 200
        except OSError:
            return False

    def _webhook_answers(self) -> bool:
        """The API server reaches the webhooks: a server-side dry-run create of a ResourceFlavor passes
        Kueue's mutating and validating webhooks (and the CRD's structural schema)."""
        flavor = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
                  "metadata": {"name": "mlplatform-webhook-probe"}}
        return self._kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(flavor),
                             check=False).returncode == 0

    # -- lifecycle -------------------------------------------------------------------------------

    def up(self, timeout: float = 180) -> dict:
        """Build if needed, install and start; returns figures: seconds to webhooks ready, binary size."""
        if self.pid_alive() and self._healthy(self.state()["health_port"]) and self._webhook_answers():
            return self.state()
        self.down()
        t0 = time.monotonic()
        binary = build.binary_path("kueue")
        if not binary.exists():
            build.build(with_tools=True)
        built = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        pki = self.run / "pki"
        crt, key = issue_serving_cert(pki, "kueue-webhook")
        ca_bundle = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
        cert_dir = self.dir / "certs"
        cert_dir.mkdir(exist_ok=True)
        for src, name in ((crt, "tls.crt"), (key, "tls.key")):
            (cert_dir / name).write_bytes(src.read_bytes())
        os.chmod(cert_dir / "tls.key", 0o600)
        if not (METRICS_CERT_DIR / "tls.crt").exists() or not (METRICS_CERT_DIR / "tls.key").exists():
            METRICS_CERT_DIR.mkdir(parents=True, exist_ok=True)
            for name in ("tls.crt", "tls.key"):
                (METRICS_CERT_DIR / name).write_bytes((cert_dir / name).read_bytes())
            os.chmod(METRICS_CERT_DIR / "tls.key", 0o600)
        ports = {"webhook_port": _free_port(), "health_port": _free_port(), "metrics_port": _free_port()}
        config = self.dir / "config.yaml"
        config.write_text(yaml.safe_dump(configuration(ports["webhook_port"], ports["health_port"],
                                                       ports["metrics_port"], cert_dir)))
        source = module_dir()
        self._kubectl("create", "namespace", NAMESPACE, check=False)
        self._apply(crd_manifests(source, ports["webhook_port"], ca_bundle))
        crds = [f"crd/{c}.kueue.x-k8s.io" for c in ("workloads", "clusterqueues", "localqueues", "resourceflavors",
                                                     "workloadpriorityclasses")]
        established = time.monotonic() + 60
        # (kubectl wait fails at once on a CRD whose status has no conditions yet: retried.)
        while self._kubectl("wait", "--for=condition=Established", "--timeout=30s", *crds, check=False).returncode:
            if time.monotonic() > established:
                raise KueueError(f"Kueue's CRDs not Established within 60s: {crds}")
            time.sleep(0.5)
        log = open(self.dir / "kueue.log", "ab")
        proc = subprocess.Popen(
            [str(binary), f"--config={config}", "--zap-log-level=info"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        self.state_path.write_text(json.dumps({"pid": proc.pid, **ports}))
        started = time.monotonic()
        deadline = started + timeout
        while not self._healthy(ports["health_port"]):
            if proc.poll() is not None:
                raise KueueError(f"kueue exited with {proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise KueueError(f"kueue not ready within {timeout}s: {self.log_tail()}")
            time.sleep(0.2)
        healthy = time.monotonic()
        self._apply(webhook_manifests(source, ports["webhook_port"], ca_bundle))
        while not self._webhook_answers():
            if proc.poll() is not None:
                raise KueueError(f"kueue exited with {proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise KueueError(f"kueue webhooks not reachable within {timeout}s: {self.log_tail()}")
            time.sleep(0.3)
        ready = time.monotonic()
        figures = {**ports, "pid": proc.pid, "binary_bytes": binary.stat().st_size,
                   "build_seconds": round(built - t0, 1), "install_seconds": round(started - built, 1),
                   "seconds_to_healthy": round(healthy - started, 1),
                   "seconds_to_webhooks_ready": round(ready - started, 1)}
        self.state_path.write_text(json.dumps(figures))
        return figures

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.dir / "kueue.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def down(self) -> None:
        """Webhook configurations, then every Kueue object and CRD, then the process."""
        if not self.kubeconfig.exists():
            return
        self._kubectl("delete", "mutatingwebhookconfiguration,validatingwebhookconfiguration", *WEBHOOK_NAMES,
                      "--ignore-not-found", "--wait=false", check=False)
        crds = [line.split("/", 1)[1] for line in self._kubectl("get", "crd", "-o", "name", check=False).stdout.split()
                if line.endswith(".kueue.x-k8s.io")]
        if crds:
            self._kubectl("delete", "crd", *crds, "--wait=false", check=False)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                left = [c for c in crds if self._kubectl("get", "crd", c, check=False).returncode == 0]
                if not left:
                    break
                # Kueue's finalizers on queues and workloads, when the manager is not there to remove them.
                for crd in left:
                    names = self._kubectl("get", crd, "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}"
                                          "/{.metadata.name}{\"\\n\"}{end}", check=False).stdout.split()
                    for item in names:
                        ns, name = item.split("/", 1)
                        self._kubectl("patch", crd, name, *(["-n", ns] if ns else []), "--type=merge",
                                      "-p", '{"metadata":{"finalizers":null}}', check=False)
                time.sleep(1)
        pid = self.state().get("pid")
        if pid and self.pid_alive():
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not self.pid_alive():
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.state_path.unlink(missing_ok=True)


def _ssl_ok(port: int, cafile: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock, ctx.wrap_socket(sock, server_hostname="127.0.0.1"):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    import cluster  # noqa: E402

    handle = cluster.Cluster()
    kueue = Kueue(handle.run, handle.bin("kubectl"))
    cmd = argv[0] if argv else "status"
    if cmd == "up":
        print(json.dumps(kueue.up(), indent=2))
    elif cmd == "down":
        kueue.down()
    else:
        st = kueue.state()
        print(json.dumps({**st, "alive": kueue.pid_alive(),
                          "webhook_tls": bool(st) and _ssl_ok(st["webhook_port"], handle.run / "pki" / "ca.crt")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
