#!/usr/bin/env python3
"""Extra components beside the local control plane: real controllers built from Go modules (build.py tools),
run as local processes with their admission webhooks served on 127.0.0.1. One runner; each component is a
Spec (data) plus a few small hooks.

What `up` does for a component (the same steps for each):
- builds its binary into the tools cache when missing or stale (build.py, `--with-tools`);
- locates the pinned Go module's source (`go mod download -json module@version`): CRDs and webhook manifests;
- issues a serving certificate for 127.0.0.1/localhost signed by the cluster CA (<run>/<name>/certs/tls.*);
- picks free loopback ports, writes the component's configuration (<run>/<name>/config.yaml);
- installs its CRDs (a conversion webhook, where the component has one, pointed at the loopback server) and
  waits until they are Established, before the process starts (its informers need the kinds served);
- starts the process (admin kubeconfig, log <run>/<name>/<binary>.log), waits for its /readyz;
- applies the module's webhook configurations, each `clientConfig.service` rewritten to
  `url: https://127.0.0.1:<port><path>` with the cluster CA, and waits until a server-side dry-run of the
  component's probe object passes them (so the API server reaches the webhooks).
`down` deletes the webhook configurations first (failurePolicy Fail with no server would refuse writes),
then, when asked, the CRDs and their objects (finalizers cleared: no manager is left to clear them),
then stops the process by its pid. `status` prints the state and whether it serves.

    python e2e/controlplane/components.py {kueue|lws|prometheus|keda} {up|down|status} [--run-dir DIR]

Adding a component (Prometheus, KEDA, ...) is a Spec below plus, where needed, a configuration function
and a webhook filter; build.py gets its tools() entry and go/<dir>/ its wrapper module.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402 - e2e/controlplane/build.py, importable once the line above ran
import cluster  # noqa: E402 - e2e/controlplane/cluster.py
import versions  # noqa: E402 - e2e/controlplane/versions.py


class ComponentError(RuntimeError):
    pass


def log(name: str, msg: str) -> None:
    print(f"[{name}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Spec:
    name: str                           # folder under the run dir, CLI name
    binary: str                         # build.py tools() name
    module: str                         # Go module holding the CRDs and webhook manifests
    version: str
    crd_files: tuple[str, ...]          # globs inside the module
    webhooks_file: str                  # the module's Mutating/ValidatingWebhookConfigurations
    ports: tuple[str, ...]              # free loopback ports to pick; "webhook" and "health" are required
    configuration: Callable[[dict[str, int], Path], dict]  # (ports, cert dir) -> the config file's content
    probe: dict                         # created with --dry-run=server: passes only when the webhooks answer
    keep_webhook: Callable[[dict], bool] = lambda hook: True
    pod_label: str | None = None        # pod webhooks only see pods with this label (no other pod depends on it)
    conversion_crds: tuple[str, ...] = ()  # CRD plurals converted by the server's /convert
    namespace: str | None = None        # created before start when set
    args: tuple[str, ...] = ("--zap-log-level=info",)
    before_start: Callable[[Path], None] = lambda certs: None  # extra preparation (fixed upstream paths)

    @property
    def webhook_config_prefix(self) -> str:
        return f"{self.name}-"


# ------------------------------------------------------------------------------------------ Kueue

KUEUE_METRICS_CERTS = Path("/etc/kueue/metrics/certs")  # fixed upstream when internal cert management is off


def _kueue_configuration(ports: dict[str, int], certs: Path) -> dict:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['health']}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports['metrics']}"},
        "webhook": {"host": "127.0.0.1", "port": ports["webhook"], "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},  # our TrainingJobs are Indexed Jobs
        # The on-demand visibility API server reads its certificate from the fixed path /visibility and is
        # served through the aggregation layer (an APIService): not needed here.
        "featureGates": {"VisibilityOnDemand": False},
    }


def _kueue_metrics_certs(certs: Path) -> None:
    """Upstream reads the metrics server's certificate from a fixed path when internal cert management is
    off (cmd/kueue/main.go): the webhook pair goes there when absent (nothing scrapes those metrics here)."""
    if (KUEUE_METRICS_CERTS / "tls.crt").exists() and (KUEUE_METRICS_CERTS / "tls.key").exists():
        return
    KUEUE_METRICS_CERTS.mkdir(parents=True, exist_ok=True)
    for name in ("tls.crt", "tls.key"):
        (KUEUE_METRICS_CERTS / name).write_bytes((certs / name).read_bytes())
    os.chmod(KUEUE_METRICS_CERTS / "tls.key", 0o600)


KUEUE = Spec(
    name="kueue", binary="kueue", module="sigs.k8s.io/kueue", version=versions.KUEUE,
    crd_files=("config/components/crd/bases/*.yaml",),
    webhooks_file="config/components/webhook/manifests.yaml",
    ports=("webhook", "health", "metrics"),
    configuration=_kueue_configuration,
    probe={"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
           "metadata": {"name": "mlplatform-webhook-probe"}},
    # Kueue's own kinds and batch/v1 Jobs (the one integration enabled).
    keep_webhook=lambda hook: ("kueue-x-k8s-io" in hook["clientConfig"]["service"]["path"]
                               or hook["clientConfig"]["service"]["path"].endswith("-batch-v1-job")),
    # Upstream patches these CRDs (config/components/crd/patches) to convert through the manager.
    conversion_crds=("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters"),
    namespace="kueue-system",
    before_start=_kueue_metrics_certs,
)


# ------------------------------------------------------------------------------------------ LeaderWorkerSet

def _lws_configuration(ports: dict[str, int], certs: Path) -> dict:
    return {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},  # it would otherwise want a Secret and a Service
        "webhook": {"host": "127.0.0.1", "port": ports["webhook"], "certDir": str(certs)},
        "metrics": {"bindAddress": "0"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['health']}"},
    }


LWS = Spec(
    name="lws", binary=build.LWS_BINARY, module="sigs.k8s.io/lws", version=versions.LWS,
    # v0.9 also runs a DisaggregatedSet controller unconditionally: its informer needs that CRD too.
    crd_files=("config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml",
               "config/crd/bases/disaggregatedset.x-k8s.io_disaggregatedsets.yaml"),
    webhooks_file="config/webhook/manifests.yaml",
    ports=("webhook", "health"),
    configuration=_lws_configuration,
    probe={"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
           "metadata": {"name": "webhook-probe", "namespace": "default"},
           "spec": {"leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": {"containers": [
               {"name": "c", "image": "busybox"}]}}}}},
    pod_label="leaderworkerset.sigs.k8s.io/name",  # the upstream chart's objectSelector
)

SPECS = {spec.name: spec for spec in (KUEUE, LWS)}
# Components with runners of their own (no webhooks; processes, a network namespace, an APIService):
# e2e/controlplane/prometheus_server.py and keda.py. KEDA first: `down` stops it before the Prometheus it queries.
OWN_RUNNERS = ("keda", "prometheus")
NAMES = (*SPECS, *OWN_RUNNERS)


# ------------------------------------------------------------------------------------------ the runner

def module_dir(module: str, version: str) -> Path:
    """The pinned module's source in the Go module cache (downloaded if absent)."""
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd="/", env=env,
                         capture_output=True, text=True)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise ComponentError(f"go mod download {module}@{version}: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])


def issue_serving_cert(pki: Path, out_dir: Path, common_name: str, dns: tuple[str, ...] = (),
                       ips: tuple[str, ...] = (), client: bool = False) -> None:
    """tls.crt/tls.key for 127.0.0.1 and localhost (and `dns`, `ips`), signed by the cluster CA (<pki>/ca.crt,
    ca.key); `client`: usable as a client certificate too (mutual TLS)."""
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
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]
                                             + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(d) for d in ("localhost", *dns)]
            + [x509.IPAddress(ipaddress.ip_address(i)) for i in ("127.0.0.1", *ips)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    os.chmod(out_dir / "tls.key", 0o600)
    (out_dir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def crd_manifests(spec: Spec, source: Path, webhook_port: int, ca_bundle: str) -> list[dict]:
    """The component's CRDs: a conversion webhook at the server's /convert where the component has one,
    none otherwise (a CRD serving one version has nothing to convert)."""
    crds = []
    for pattern in spec.crd_files:
        paths = sorted(source.glob(pattern))
        if not paths:
            raise ComponentError(f"{spec.module}@{spec.version} has no {pattern}")
        for path in paths:
            crd = yaml.safe_load(path.read_text())
            if crd["spec"]["names"]["plural"] in spec.conversion_crds:
                crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                    "clientConfig": {"url": f"https://127.0.0.1:{webhook_port}/convert", "caBundle": ca_bundle},
                    "conversionReviewVersions": ["v1"]}}
            else:
                crd["spec"].pop("conversion", None)
            crds.append(crd)
    return crds


def webhook_manifests(spec: Spec, source: Path, webhook_port: int, ca_bundle: str) -> list[dict]:
    """The module's webhook configurations, renamed <component>-..., kept hooks pointed at
    https://127.0.0.1:<port><path> with the cluster CA."""
    out = []
    for doc in yaml.safe_load_all((source / spec.webhooks_file).read_text()):
        if not doc:
            continue
        kept = []
        for hook in doc.get("webhooks") or []:
            if not spec.keep_webhook(hook):
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{webhook_port}{path}", "caBundle": ca_bundle}
            if spec.pod_label and any("pods" in rule["resources"] for rule in hook.get("rules") or []):
                hook["objectSelector"] = {"matchExpressions": [{"key": spec.pod_label, "operator": "Exists"}]}
            hook["timeoutSeconds"] = 10
            kept.append(hook)
        doc["metadata"] = {"name": spec.webhook_config_prefix + doc["metadata"]["name"]}
        doc["webhooks"] = kept
        out.append(doc)
    return out


class Runner:
    """One component on one local cluster (a run dir of cluster.py)."""

    def __init__(self, spec: Spec, run_dir: str | os.PathLike | None = None):
        self.spec = spec
        self.cluster = cluster.Cluster(run_dir)
        self.dir = self.cluster.run / spec.name
        self.state_path = self.dir / "state.json"
        self.binary = build.binary_path(spec.binary)

    # -- helpers -------------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([self.cluster.bin("kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), *args],
                             input=stdin, capture_output=True, text=True, timeout=180)
        if check and out.returncode != 0:
            raise ComponentError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def _apply(self, objects: list[dict]) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager=mlplatform-e2e-{self.spec.name}",
                     "-f", "-", stdin=yaml.safe_dump_all(objects))

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _pid_alive(self, pid: int | None) -> bool:
        return bool(pid) and cluster._proc_exe(pid) == str(self.binary) and cluster._proc_state(pid) not in ("Z", "X")

    def _webhooks_admit(self) -> bool:
        return self.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(self.spec.probe),
                            check=False).returncode == 0

    def running(self) -> bool:
        """The process is ours and healthy, and the API server reaches its webhooks."""
        st = self.state()
        ports = st.get("ports") or {}
        return (self._pid_alive(st.get("pid")) and cluster.http_ok(f"http://127.0.0.1:{ports['health']}/readyz")
                and self._webhooks_admit())

    def crd_names(self) -> list[str]:
        return [f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
                for crd in crd_manifests(self.spec, self.source(), 0, "")]

    def crds_installed(self) -> bool:
        return self.kubectl("get", "crd", *self.crd_names(), check=False).returncode == 0

    def source(self) -> Path:
        return module_dir(self.spec.module, self.spec.version)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.dir / f"{self.spec.binary}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- lifecycle -----------------------------------------------------------------------------------

    def up(self, timeout: float = 180) -> dict:
        """Build if needed, install and start; idempotent. Returns figures (seconds per step, ports, pid)."""
        name = self.spec.name
        if self.running():
            self._apply(self._webhooks(self.state()["ports"]["webhook"]))  # a restarted cluster may have lost them
            log(name, f"already running (pid {self.state()['pid']})")
            return self.state()
        self.down(remove_crds=False)
        t0 = time.monotonic()
        figures: dict = {}
        if self.spec.binary in {c.name for c in build.missing(with_tools=True)}:
            build.build(with_tools=True)
        figures["build_seconds"] = round(time.monotonic() - t0, 1)
        self.dir.mkdir(parents=True, exist_ok=True)
        certs = self.dir / "certs"
        issue_serving_cert(self.cluster.run / "pki", certs, f"{name}-webhook")
        ports = {port: cluster.free_port() for port in self.spec.ports}
        while len(set(ports.values())) < len(ports):
            ports = {port: cluster.free_port() for port in self.spec.ports}
        config = self.dir / "config.yaml"
        config.write_text(yaml.safe_dump(self.spec.configuration(ports, certs)))
        self.spec.before_start(certs)
        t = time.monotonic()
        if self.spec.namespace:
            self.kubectl("create", "namespace", self.spec.namespace, check=False)
        crds = crd_manifests(self.spec, self.source(), ports["webhook"], self._ca_bundle())
        self._apply(crds)
        names = [f"crd/{c['spec']['names']['plural']}.{c['spec']['group']}" for c in crds]
        deadline = time.monotonic() + 90
        # (kubectl wait fails at once on a CRD whose status has no conditions yet: retried.)
        while self.kubectl("wait", "--for=condition=Established", "--timeout=30s", *names, check=False).returncode:
            if time.monotonic() > deadline:
                raise ComponentError(f"{name}: CRDs not Established within 90s: {names}")
            time.sleep(0.5)
        figures["crd_seconds"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        logf = open(self.dir / f"{self.spec.binary}.log", "ab")
        proc = subprocess.Popen([str(self.binary), f"--config={config}", *self.spec.args],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)})
        logf.close()
        self.state_path.write_text(json.dumps({"pid": proc.pid, "ports": ports}))
        deadline = time.monotonic() + timeout
        while not cluster.http_ok(f"http://127.0.0.1:{ports['health']}/readyz"):
            self._check(proc, deadline, "not healthy")
            time.sleep(0.2)
        figures["seconds_to_healthy"] = round(time.monotonic() - t, 1)
        self._apply(self._webhooks(ports["webhook"]))
        while not self._webhooks_admit():
            self._check(proc, deadline, "webhooks not reachable by the API server")
            time.sleep(0.3)
        figures["seconds_to_webhooks_ready"] = round(time.monotonic() - t, 1)
        figures["up_seconds"] = round(time.monotonic() - t0, 1)
        st = {"pid": proc.pid, "ports": ports, "version": self.spec.version, "figures": figures}
        self.state_path.write_text(json.dumps(st))
        log(name, f"{self.spec.version} running (pid {proc.pid}): {json.dumps(figures)}")
        return st

    def _ca_bundle(self) -> str:
        return base64.b64encode((self.cluster.run / "pki" / "ca.crt").read_bytes()).decode()

    def _webhooks(self, port: int) -> list[dict]:
        return webhook_manifests(self.spec, self.source(), port, self._ca_bundle())

    def _check(self, proc: subprocess.Popen, deadline: float, what: str) -> None:
        if proc.poll() is not None:
            raise ComponentError(f"{self.spec.binary} exited with {proc.returncode}:\n{self.log_tail()}")
        if time.monotonic() > deadline:
            raise ComponentError(f"{self.spec.binary}: {what}:\n{self.log_tail()}")

    def _webhook_config_names(self) -> list[str]:
        out = self.kubectl("get", "mutatingwebhookconfiguration,validatingwebhookconfiguration", "-o", "name",
                           check=False).stdout.split()
        return [n for n in out if n.split("/", 1)[1].startswith(self.spec.webhook_config_prefix)]

    def down(self, remove_crds: bool = True) -> None:
        """Webhook configurations, then (remove_crds) the CRDs and their objects, then the process."""
        if self.cluster.kubeconfig.exists() and self.cluster.is_running():
            webhooks = self._webhook_config_names()
            if webhooks:
                self.kubectl("delete", *webhooks, "--ignore-not-found", "--wait=false", check=False)
            if remove_crds:
                self._remove_crds()
        pid = self.state().get("pid")
        if self._pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not self._pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.state_path.unlink(missing_ok=True)

    def _remove_crds(self) -> None:
        present = [c for c in self.crd_names() if self.kubectl("get", "crd", c, check=False).returncode == 0]
        if not present:
            return
        self.kubectl("delete", "crd", *present, "--wait=false", check=False)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            left = [c for c in present if self.kubectl("get", "crd", c, check=False).returncode == 0]
            if not left:
                return
            # Finalizers on the component's objects, when its manager is not there to remove them.
            for crd in left:
                items = self.kubectl("get", crd, "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}"
                                     "/{.metadata.name}{\"\\n\"}{end}", check=False).stdout.split()
                for item in items:
                    ns, obj = item.split("/", 1)
                    self.kubectl("patch", crd, obj, *(["-n", ns] if ns else []), "--type=merge",
                                 "-p", '{"metadata":{"finalizers":null}}', check=False)
            time.sleep(1)
        raise ComponentError(f"{self.spec.name}: CRDs still present after 90s: {left}")


def runner(name: str, run_dir: str | os.PathLike | None = None):
    """The runner of one component: up(), down(remove_crds=...), running(), state()."""
    if name == "prometheus":
        import prometheus_server  # e2e/controlplane/prometheus_server.py (imports this module's neighbours)

        return prometheus_server.PrometheusRunner(run_dir)
    if name == "keda":
        import keda  # e2e/controlplane/keda.py

        return keda.KedaRunner(run_dir)
    return Runner(SPECS[name], run_dir)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("component", choices=sorted(NAMES))
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", help="the cluster's run folder (default: as cluster.py)")
    parser.add_argument("--keep-crds", action="store_true", help="down: leave the CRDs and their objects")
    args = parser.parse_args(argv)
    r = runner(args.component, args.run_dir)
    if args.command == "up":
        print(json.dumps(r.up(), indent=2))
    elif args.command == "down":
        r.down(remove_crds=not args.keep_crds)
    else:
        running = r.running()
        print(json.dumps({**r.state(), "running": running}, indent=2))
        return 0 if running else 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
