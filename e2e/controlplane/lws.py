#!/usr/bin/env python3
"""The real LeaderWorkerSet controller (sigs.k8s.io/lws, pinned in versions.py) beside the local control plane.

Started on demand by the tests that need it (the `lws_controller` fixture), not by `cluster.py up`:
`make cluster` keeps working without it. What start() does:

- builds the binary into the tools cache when missing (build.py tools(): `lws-controller`);
- issues a serving certificate for 127.0.0.1 signed by the cluster CA (<run>/pki/ca.{crt,key});
- writes its Configuration: webhooks on 127.0.0.1:<free port> with that certificate, its internal cert
  management OFF (it would otherwise want a Secret and a Service), leader election off, metrics off,
  health probes on a free loopback port;
- runs it as a process with the admin kubeconfig, logs in <run>/lws/lws-controller.log;
- installs the CRD from the module (its conversion webhook dropped: the CRD serves only v1, so there is
  nothing to convert) and the module's webhook configurations rewritten to a URL clientConfig
  https://127.0.0.1:<port>/<path> with our CA; the pod webhooks only see pods labelled
  leaderworkerset.sigs.k8s.io/name (the upstream chart's objectSelector), so no other pod depends on it.

stop() deletes the webhook configurations first (failurePolicy Fail), then stops the process by its pid.
CLI: `python e2e/controlplane/lws.py up|down|status`.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import ssl
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402
import cluster  # noqa: E402
import versions  # noqa: E402

BINARY = "lws-controller"
MODULE = "sigs.k8s.io/lws"
CRD_PATH = "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
WEBHOOKS_PATH = "config/webhook/manifests.yaml"
CRD_NAME = "leaderworkersets.leaderworkerset.x-k8s.io"
WEBHOOK_CONFIGS = {"MutatingWebhookConfiguration": "lws-mutating-webhook-configuration",
                   "ValidatingWebhookConfiguration": "lws-validating-webhook-configuration"}
POD_LABEL = "leaderworkerset.sigs.k8s.io/name"


def log(msg: str) -> None:
    print(f"[lws] {msg}", file=sys.stderr, flush=True)


def module_dir() -> Path:
    """The downloaded sigs.k8s.io/lws module (CRD and webhook manifests), through the wrapper module."""
    out = subprocess.run(["go", "list", "-m", "-json", MODULE], cwd=build.GO_DIR / "lws", capture_output=True,
                         text=True, check=True, env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    info = json.loads(out.stdout)
    assert info["Version"] == versions.LWS, info
    if not info.get("Dir"):
        subprocess.run(["go", "mod", "download", f"{MODULE}@{versions.LWS}"], check=True, cwd=build.GO_DIR / "lws")
        return module_dir()
    return Path(info["Dir"])


def crd_manifest() -> dict:
    crd = yaml.safe_load((module_dir() / CRD_PATH).read_text())
    crd["spec"].pop("conversion", None)  # one served version: no conversion webhook needed
    return crd


def webhook_manifests(port: int, ca_pem: bytes) -> list[dict]:
    import base64
    out = []
    for doc in yaml.safe_load_all((module_dir() / WEBHOOKS_PATH).read_text()):
        if not doc:
            continue
        doc["metadata"] = {"name": WEBHOOK_CONFIGS[doc["kind"]]}
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}",
                                    "caBundle": base64.b64encode(ca_pem).decode()}
            if any("pods" in r["resources"] for r in hook["rules"]):
                hook["objectSelector"] = {"matchExpressions": [{"key": POD_LABEL, "operator": "Exists"}]}
            hook["timeoutSeconds"] = 10
        out.append(doc)
    return out


def issue_serving_cert(pki: Path, out_dir: Path) -> None:
    """tls.crt/tls.key for 127.0.0.1, signed by the cluster CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lws-webhook")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    os.chmod(out_dir / "tls.key", 0o600)
    (out_dir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class LwsController:
    def __init__(self, handle: "cluster.Cluster | None" = None):
        self.cluster = handle or cluster.Cluster()
        self.dir = self.cluster.run / "lws"
        self.state_file = self.dir / "state.json"
        self.timings: dict[str, float] = {}

    # state ----------------------------------------------------------------
    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _alive(self, st: dict) -> bool:
        pid = st.get("pid")
        if not pid or cluster._proc_exe(pid) != str(build.binary_path(BINARY)):
            return False
        return cluster.http_ok(f"http://127.0.0.1:{st['health_port']}/readyz") and self._webhook_serves(st["webhook_port"])

    @staticmethod
    def _webhook_serves(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([self.cluster.bin("kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), *args],
                                input=stdin, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    # up / down --------------------------------------------------------------
    def up(self) -> dict:
        t0 = time.monotonic()
        st = self._state()
        if self._alive(st):
            log(f"already running (pid {st['pid']}, webhooks on 127.0.0.1:{st['webhook_port']})")
            self._install(st)  # idempotent: a restarted cluster may have lost nothing, or everything
            return st
        if not (build.binary_path(BINARY).is_file() and build.missing(with_tools=True) == []):
            built = build.build(with_tools=True)
            if BINARY in built:
                self.timings["build_seconds"] = built[BINARY]
        self.dir.mkdir(parents=True, exist_ok=True)
        pki = self.cluster.run / "pki"
        issue_serving_cert(pki, self.dir / "certs")
        st = {"webhook_port": cluster.free_port(), "health_port": cluster.free_port()}
        config = {
            "apiVersion": "config.lws.x-k8s.io/v1alpha1",
            "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"host": "127.0.0.1", "port": st["webhook_port"], "certDir": str(self.dir / "certs")},
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{st['health_port']}"},
        }
        (self.dir / "config.yaml").write_text(yaml.safe_dump(config))
        t_crd = time.monotonic()
        self._install_crd()  # before the controller starts: its informers need the kind served
        self.timings["crd_seconds"] = time.monotonic() - t_crd
        logf = open(self.dir / "lws-controller.log", "ab")
        t_start = time.monotonic()
        proc = subprocess.Popen(
            [str(build.binary_path(BINARY)), f"--config={self.dir / 'config.yaml'}", "--zap-log-level=info"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)})
        st["pid"] = proc.pid
        self.state_file.write_text(json.dumps(st))
        deadline = time.monotonic() + 60
        while not self._alive(st):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "lws-controller.log").read_text()[-3000:]
                raise RuntimeError(f"lws-controller did not become ready (exit {proc.poll()}):\n{tail}")
            time.sleep(0.2)
        self.timings["start_seconds"] = time.monotonic() - t_start
        t_install = time.monotonic()
        self._install_webhooks(st)
        self.timings["webhook_setup_seconds"] = time.monotonic() - t_install
        self.timings["up_seconds"] = time.monotonic() - t0
        st["timings"] = self.timings
        self.state_file.write_text(json.dumps(st))
        log(f"running (pid {st['pid']}): " + ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items()))
        return st

    def _install(self, st: dict) -> None:
        self._install_crd()
        self._install_webhooks(st)

    def _install_crd(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump(crd_manifest()))
        for _ in range(50):  # a CRD just created may have no status yet: `kubectl wait` fails on that
            if self.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s",
                            check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"CRD {CRD_NAME} not Established")

    def _install_webhooks(self, st: dict) -> None:
        ca = (self.cluster.run / "pki" / "ca.crt").read_bytes()
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                     stdin=yaml.safe_dump_all(webhook_manifests(st["webhook_port"], ca)))
        self._wait_webhook_admits()

    def _wait_webhook_admits(self, timeout: float = 30) -> None:
        """A server-side dry-run create goes through the mutating and validating webhooks."""
        probe = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                 "metadata": {"name": "webhook-probe", "namespace": "default"},
                 "spec": {"leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": {"containers": [
                     {"name": "c", "image": "busybox"}]}}}}}
        deadline = time.monotonic() + timeout
        while True:
            r = self.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(probe), check=False)
            if r.returncode == 0 and json.loads(r.stdout)["spec"].get("rolloutStrategy"):
                return  # defaulted by the mutating webhook
            if time.monotonic() > deadline:
                raise RuntimeError(f"the LWS webhooks do not admit: {r.stderr or r.stdout[:500]}")
            time.sleep(0.5)

    def down(self) -> None:
        for kind, name in WEBHOOK_CONFIGS.items():
            self.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)
        st = self._state()
        pid = st.get("pid")
        if pid and cluster._proc_exe(pid) == str(build.binary_path(BINARY)):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if cluster._proc_exe(pid) is None or cluster._proc_state(pid) == "Z":
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        log("stopped; webhook configurations removed (the CRD stays)")


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    c = LwsController()
    if cmd == "up":
        c.up()
    elif cmd == "down":
        c.down()
    else:
        st = c._state()
        print(json.dumps({**st, "running": c._alive(st)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# --- pytest fixture --------------------------------------------------------------------------------
try:
    import pytest
except ImportError:  # the CLI above needs no pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def lws_controller(kubeconfig):
        """The LWS controller for the tests that need it: started when not running, stopped (webhook
        configurations removed) at the end of the session if this session started it."""
        import os
        if os.environ.get("E2E_KUBECONFIG"):
            pytest.fail("the LWS e2e tests run the LWS controller beside the local control plane; "
                        "E2E_KUBECONFIG points elsewhere")
        controller = LwsController()
        started = not controller._alive(controller._state())
        crd_before = controller.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0
        state = controller.up()
        print(f"LWS controller: {state.get('timings') or 'already running'}")
        yield controller
        if started:
            controller.down()
        if started and not crd_before:
            # Leave the cluster as found: its 17k-line CRD makes every later kube-apiserver start slower
            # (measured: the chaos test's API server restart window lost most of its edits with it installed).
            controller.kubectl("delete", "crd", CRD_NAME, "--wait=false", check=False)
