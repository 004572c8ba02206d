"""A real Prometheus server beside the local control plane (built by build.py from the pinned
github.com/prometheus/prometheus module, run by components.py: `components.py prometheus up|down|status`).

It listens on 127.0.0.1 only and scrapes every second:
- the targets listed in <run>/prometheus/targets/*.json (file service discovery): the simulated model-metrics
  exporter (e2e/model_metrics.py) writes its own address there when it starts, so Prometheus scrapes it for
  real. `honor_labels: true` keeps the series' own `namespace` and `pod` labels, which the exporter sets
  as Prometheus' kubernetes_sd relabelling of a pod target would;
- itself (job `prometheus`).
Its data lives in <run>/prometheus/data; `down` stops it by its pid.
"""
from __future__ import annotations

import json
import os
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
import versions  # noqa: E402 - e2e/controlplane/versions.py

SCRAPE_INTERVAL = "1s"
MODEL_METRICS_JOB = "model-metrics"


class PrometheusError(RuntimeError):
    pass


def configuration(self_address: str, targets_dir: Path) -> dict:
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {"job_name": MODEL_METRICS_JOB, "honor_labels": True,
             "file_sd_configs": [{"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [self_address]}]},
        ],
    }


class PrometheusRunner:
    """One Prometheus server for one local cluster (a run dir of cluster.py)."""

    name = "prometheus"
    version = versions.PROMETHEUS_RELEASE

    def __init__(self, run_dir: str | os.PathLike | None = None):
        self.cluster = cluster.Cluster(run_dir)
        self.dir = self.cluster.run / self.name
        self.state_path = self.dir / "state.json"
        self.targets_dir = self.dir / "targets"
        self.binary = build.binary_path(build.PROMETHEUS_BINARY)

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def url(self) -> str:
        port = self.state().get("port")
        if not port:
            raise PrometheusError(f"Prometheus is not running on {self.cluster.run} (components.py prometheus up)")
        return f"http://127.0.0.1:{port}"

    def _pid_alive(self, pid: int | None) -> bool:
        return bool(pid) and cluster._proc_exe(pid) == str(self.binary) and cluster._proc_state(pid) not in ("Z", "X")

    def running(self) -> bool:
        st = self.state()
        return self._pid_alive(st.get("pid")) and cluster.http_ok(f"http://127.0.0.1:{st['port']}/-/ready")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.dir / "prometheus.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def up(self, timeout: float = 120) -> dict:
        """Build if needed and start; idempotent. Returns its state (pid, port, url, figures)."""
        if self.running():
            return self.state()
        self.down()
        t0 = time.monotonic()
        if build.PROMETHEUS_BINARY in {c.name for c in build.missing(with_tools=True)}:
            build.build(with_tools=True)
        figures = {"build_seconds": round(time.monotonic() - t0, 1)}
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        previous = self.state().get("port") or 0
        port = previous if previous and cluster.port_free(previous) else cluster.free_port()
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(configuration(f"127.0.0.1:{port}", self.targets_dir)))
        t = time.monotonic()
        logf = open(self.dir / "prometheus.log", "ab")
        proc = subprocess.Popen([str(self.binary), f"--config.file={config}",
                                 f"--storage.tsdb.path={self.dir / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}",
                                 "--storage.tsdb.retention.time=6h", "--log.level=warn"],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.dir)
        logf.close()
        self.state_path.write_text(json.dumps({"pid": proc.pid, "port": port}))
        deadline = time.monotonic() + timeout
        while not cluster.http_ok(f"http://127.0.0.1:{port}/-/ready"):
            if proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)
        figures["seconds_to_ready"] = round(time.monotonic() - t, 1)
        st = {"pid": proc.pid, "port": port, "url": f"http://127.0.0.1:{port}", "version": self.version,
              "figures": figures}
        self.state_path.write_text(json.dumps(st))
        print(f"[prometheus] {self.version} running (pid {proc.pid}) at {st['url']}: {json.dumps(figures)}",
              file=sys.stderr, flush=True)
        return st

    def down(self, remove_crds: bool = False) -> None:  # the runners' common signature; it has no CRDs
        pid = self.state().get("pid")
        if self._pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not self._pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        if self.state_path.exists():
            st = self.state()
            st.pop("pid", None)  # the port is kept: the next start takes it again when free
            self.state_path.write_text(json.dumps({"port": st.get("port")}))
