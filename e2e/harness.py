"""Helpers of the e2e tests and the scripts beside them (dev.py, the benchmarks): kubectl, the operator as a
subprocess, custom-resource helpers, wait_until. No fixtures here: they all live in e2e/conftest.py (a test
module that imported a fixture would get an instance of its own)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))

import build  # noqa: E402 - e2e/controlplane/build.py, importable once the line above ran
import cluster  # noqa: E402 - e2e/controlplane/cluster.py

GROUP, VERSION = "mlplatform.dev", "v1alpha1"
PLURALS = {"FeatureView": "featureviews", "ModelDeployment": "modeldeployments", "TrainingJob": "trainingjobs",
           "BatchPrediction": "batchpredictions"}
# The kwok stages react to these pod annotations; the operator copies them from the custom resource.
E2E_OPERATOR_CONFIG = {"podAnnotationPrefixes": ["mlplatform.dev/kwok-"]}


DEV_PID_FILE = ROOT / ".run" / "dev-operator.pid"


def stop_dev_operator() -> bool:
    """Stop the operator `make dev` left running: two operators on one cluster would fight."""
    if not DEV_PID_FILE.exists():
        return False
    pid = int(DEV_PID_FILE.read_text())
    DEV_PID_FILE.unlink()
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


def kubectl_binary() -> str:
    """The kubectl built with the local control plane (same version), else the one on PATH."""
    built = build.binary_path("kubectl")
    if built.exists():
        return str(built)
    found = shutil.which("kubectl")
    if found:
        return found
    raise RuntimeError(f"no kubectl: run `make cluster-build` (builds {built}) or put kubectl on PATH")


class Kubectl:
    def __init__(self, kubeconfig: str):
        self.binary = kubectl_binary()
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, env=self.env,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, manifest: dict | str, namespace: str, check: bool = True) -> subprocess.CompletedProcess:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.run("apply", "-n", namespace, "-f", "-", stdin=text, check=check)


def service_account_kubeconfig(kubectl: Kubectl, admin_kubeconfig: str, namespace: str, account: str,
                               path: Path, duration: str = "2h") -> Path:
    """A kubeconfig that authenticates as ServiceAccount namespace/account, as the operator's pod would: a
    bound token from `kubectl create token` (the TokenRequest API), the admin kubeconfig's server and CA,
    no client certificate. Give it to Operator(kubeconfig=...) to run the operator with that account's RBAC."""
    token = kubectl.run("create", "token", account, "-n", namespace, f"--duration={duration}").stdout.strip()
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    contexts = {c["name"]: c["context"] for c in admin["contexts"]}
    cluster_name = contexts[admin["current-context"]]["cluster"]
    cluster = next(c["cluster"] for c in admin["clusters"] if c["name"] == cluster_name)
    user = f"system:serviceaccount:{namespace}:{account}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {k: v for k, v in cluster.items()
                                                        if k in ("server", "certificate-authority",
                                                                 "certificate-authority-data")}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cluster_name, "user": user, "namespace": namespace}}],
        "current-context": user,
    }))
    path.chmod(0o600)
    return path


class Operator:
    """`mlplatform run` as a subprocess. Its user agent, mlplatform-operator/<identity>, names it in the
    API server's audit log; POD_NAME sets the identity."""

    def __init__(self, kubeconfig: str, log_path: Path, extra_args: tuple[str, ...] = (), identity: str | None = None):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = extra_args
        self.identity = identity
        self.metrics_port = cluster.free_port()
        self.health_port = cluster.free_port()
        self.process: subprocess.Popen | None = None

    def start(self, config_path: Path, wait_ready: bool = True) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        if self.identity:
            env["POD_NAME"] = self.identity
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlplatform.cli", "run", "--config", str(config_path),
             "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            self.wait_ready()

    def probe(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as rsp:
                return rsp.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /readyz: every watch's initial list is in the cache."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited with {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
            if self.probe("/readyz") == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"operator not ready within {timeout}s: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a node is lost."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as rsp:
            return rsp.read().decode()

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kib / 1024

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until(fn, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    """Call fn() until it returns a truthy value; return that value or fail the test."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - API hiccups while polling are retried, the last one is reported
            last_exc = e
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def get_cr(custom, kind: str, namespace: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name)


def condition(body: dict, type_: str) -> dict:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def wait_condition(wait_for, custom, kind, namespace, name, type_, status, reason=None, timeout=60):
    def check():
        body = get_cr(custom, kind, namespace, name)
        cond = condition(body, type_)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return body
        return None
    return wait_for(check, timeout=timeout, what=f"{kind} {name} {type_}={status} {reason or ''}")


def resource(kind: str, name: str, spec: dict, annotations: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec}


def feature_view_spec(**extra) -> dict:
    """A FeatureView spec the tests vary; a key given as None is left out."""
    spec = {
        "entities": [{"name": "driver", "joinKey": "driver_id", "valueType": "INT64"}],
        "features": [{"name": "conv_rate", "dtype": "FLOAT32"}],
        "source": {"path": "s3://features/driver.parquet", "timestampField": "event_timestamp"},
        "freshness": {"maxStaleness": "1h"},
        "serving": {"replicas": 1},
    }
    spec.update(extra)
    return {k: v for k, v in spec.items() if v is not None}


class PrometheusAPI:
    """The local Prometheus' HTTP API (the `prometheus` fixture): `.url` (what the operator's `prometheus.url`
    and a ScaledObject's prometheus trigger `serverAddress` take), instant queries."""

    def __init__(self, url: str):
        self.url = url

    def query(self, promql: str) -> list[dict]:
        """The result vector of an instant query: [{"metric": {...}, "value": [ts, "1.5"]}, ...]."""
        import json
        import urllib.parse

        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}",
                                    timeout=10) as rsp:
            body = json.loads(rsp.read())
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r}: {body}")
        result = body["data"]["result"]
        return result if body["data"]["resultType"] == "vector" else [{"metric": {}, "value": result}]

    def value(self, promql: str) -> float | None:
        """The single value of a query returning one sample; None when it returns none."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"query {promql!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_value(self, promql: str, check, timeout: float = 30, what: str | None = None) -> float:
        """Until the query's single value satisfies check(value); returns it."""
        def probe():
            v = self.value(promql)
            return (v,) if v is not None and check(v) else None
        return wait_until(probe, timeout=timeout, interval=0.5, what=what or f"{promql} in Prometheus")[0]
