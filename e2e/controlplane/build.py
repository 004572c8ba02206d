"""Build the control-plane binaries from Go modules into a cache outside the repo.

Cache layout (default ``${XDG_CACHE_HOME:-$HOME/.cache}/mlplatform/bin/k8s-v1.36.3``,
override with ``MLPLATFORM_BIN_DIR``)::

    kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok
    <binary>.stamp     what it was built from (module@version, go version, flags)
    build-log.jsonl    one line per build: component, seconds, size, timestamp

A binary whose stamp matches is reused; a missing or stale one is rebuilt.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import versions  # noqa: E402

GO_DIR = HERE / "go"


def cache_dir() -> Path:
    env = os.environ.get("MLPLATFORM_BIN_DIR")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlplatform" / "bin" / versions.cache_key()


@dataclass(frozen=True)
class Component:
    name: str          # binary name
    package: str       # Go package path of the main package
    module_dir: str    # wrapper module directory under go/
    version: str       # pinned version (for the stamp)
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # go build -tags


def _kube_ldflags() -> tuple[str, ...]:
    v = versions.KUBERNETES
    major, minor = v.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-X {pkg}.gitVersion={v}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
        f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
    )


# The version in the name: worktrees pinned to another LWS share this cache without rebuilding over each other.
LWS_BINARY = f"lws-controller-{versions.LWS}"
PROMETHEUS_BINARY = f"prometheus-{versions.PROMETHEUS_RELEASE}"
KEDA_OPERATOR_BINARY = f"keda-operator-{versions.KEDA}"
KEDA_ADAPTER_BINARY = f"keda-adapter-{versions.KEDA}"


def tools() -> list[Component]:
    """Binaries only some tests need (not the control plane): built by `build --with-tools`, which
    `make test` runs, and not by `make cluster` / `make dev`. One Component per tool; its wrapper
    module lives in go/<module_dir>."""
    return [
        Component("kstatus", "mlplatform.dev/kstatus", "cli-utils", f"sigs.k8s.io/cli-utils@{versions.CLI_UTILS}"),
        Component("promtool", "github.com/prometheus/prometheus/cmd/promtool", "prometheus",
                  f"github.com/prometheus/prometheus@{versions.PROMETHEUS}",
                  (f"-X github.com/prometheus/common/version.Version={versions.PROMETHEUS_RELEASE}",),
                  # Without the service-discovery plugins (cloud SDKs): most of the build, unused by rules tests.
                  tags=("remove_all_sd",)),
        Component("kueue", "sigs.k8s.io/kueue/cmd/kueue", "kueue", f"sigs.k8s.io/kueue@{versions.KUEUE}",
                  (f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={versions.KUEUE}",)),
        # The LeaderWorkerSet controller (multi-node ModelDeployment replicas); run by e2e/controlplane/components.py.
        Component(LWS_BINARY, "sigs.k8s.io/lws/cmd", "lws", f"sigs.k8s.io/lws@{versions.LWS}"),
        # The Prometheus server that scrapes the simulated model metrics (e2e/controlplane/signals.py).
        Component(PROMETHEUS_BINARY, "github.com/prometheus/prometheus/cmd/prometheus", "prometheus",
                  f"github.com/prometheus/prometheus@{versions.PROMETHEUS}",
                  (f"-X github.com/prometheus/common/version.Version={versions.PROMETHEUS_RELEASE}",),
                  # Only static targets and file_sd are used: the cloud service discoveries stay out.
                  tags=("remove_all_sd",)),
        # KEDA: the operator (ScaledObjects -> HPAs) and its external-metrics API server.
        *(Component(binary, f"github.com/kedacore/keda/v2/cmd/{cmd}", "keda",
                    f"github.com/kedacore/keda/v2@{versions.KEDA}",
                    (f"-X github.com/kedacore/keda/v2/version.Version={versions.KEDA.lstrip('v')}",))
          for binary, cmd in ((KEDA_OPERATOR_BINARY, "operator"), (KEDA_ADAPTER_BINARY, "adapter"))),
    ]


def components(with_tools: bool = False) -> list[Component]:
    return control_plane() + (tools() if with_tools else [])


def control_plane() -> list[Component]:
    kube = [Component(c, f"k8s.io/kubernetes/cmd/{c}", "kubernetes",
                      f"k8s.io/kubernetes@{versions.KUBERNETES}", _kube_ldflags())
            for c in versions.KUBE_COMMANDS]
    return [
        Component("etcd", versions.ETCD_MODULE, "etcd", f"{versions.ETCD_MODULE}@{versions.ETCD}"),
        Component("kwok", "sigs.k8s.io/kwok/cmd/kwok", "kwok", f"sigs.k8s.io/kwok@{versions.KWOK}"),
        *kube,
    ]


def go_version() -> str:
    return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _stamp(c: Component, gov: str) -> str:
    stamp = {"module": c.version, "package": c.package, "go": gov, "ldflags": list(c.ldflags)}
    if c.tags:
        stamp["tags"] = list(c.tags)
    return json.dumps(stamp, sort_keys=True)


def binary_path(name: str) -> Path:
    return cache_dir() / name


def missing(gov: str | None = None, with_tools: bool = False) -> list[Component]:
    """Components whose binary is absent or was built from something else."""
    d = cache_dir()
    out = []
    gov_cached: list[str] = []

    def gv() -> str:
        if gov is not None:
            return gov
        if not gov_cached:
            gov_cached.append(go_version())
        return gov_cached[0]

    for c in components(with_tools):
        b, s = d / c.name, d / f"{c.name}.stamp"
        if not (b.is_file() and os.access(b, os.X_OK) and s.is_file()):
            out.append(c)
            continue
        try:
            if s.read_text() != _stamp(c, gv()):
                out.append(c)
        except OSError:
            out.append(c)
    return out


def have_all(with_tools: bool = False) -> bool:
    """Cheap check used on the warm path: every binary and stamp present.

    Does not run `go` (so a warm start needs no toolchain); a stale stamp is
    only detected by `build`.
    """
    d = cache_dir()
    return all((d / c.name).is_file() and (d / f"{c.name}.stamp").is_file()
               for c in components(with_tools))


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
    return env


def _build_one(c: Component, out: Path, log) -> float:
    ldflags = " ".join(("-s", "-w") + c.ldflags)
    tmp = out.with_name(f".{c.name}.tmp{os.getpid()}")
    tags = ["-tags", ",".join(c.tags)] if c.tags else []
    cmd = ["go", "build", "-trimpath", *tags, "-ldflags", ldflags, "-o", str(tmp), c.package]
    start = time.monotonic()
    log(f"[build] {c.name}: go build {c.package} ({c.version})")
    proc = subprocess.Popen(cmd, cwd=GO_DIR / c.module_dir, env=_go_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    done = threading.Event()

    def heartbeat():
        while not done.wait(15):
            log(f"[build] {c.name}: still building, {time.monotonic() - start:.0f}s elapsed")

    t = threading.Thread(target=heartbeat, daemon=True)
    t.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("go: downloading"):
            log(f"[build] {c.name}: {line.strip()}")
    rc = proc.wait()
    done.set()
    t.join()
    secs = time.monotonic() - start
    if rc != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join(lines[-40:])
        raise RuntimeError(f"building {c.name} failed (exit {rc}) after {secs:.0f}s:\n{tail}")
    os.replace(tmp, out)
    log(f"[build] {c.name}: done in {secs:.0f}s ({out.stat().st_size / 1e6:.0f} MB)")
    return secs


def build(force: bool = False, log=None, with_tools: bool = False) -> dict[str, float]:
    """Build every missing/stale binary (with_tools: the tools too). Returns {name: seconds} for those built."""
    if log is None:
        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    if shutil.which("go") is None:
        if have_all(with_tools) and not force:
            log(f"[build] go not found; using the cached binaries in {d} as they are")
            return {}
        raise RuntimeError("the Go toolchain (`go`) is needed to build the control plane")
    gov = go_version()
    with open(d / ".build.lock", "w") as lockf:
        # One builder at a time (parallel pytest sessions, make + pytest ...).
        try:
            fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[build] another build holds {d / '.build.lock'}; waiting")
            fcntl.flock(lockf, fcntl.LOCK_EX)
        todo = components(with_tools) if force else missing(gov, with_tools)
        if not todo:
            log(f"[build] all binaries present in {d}")
            return {}
        log(f"[build] building {', '.join(c.name for c in todo)} into {d} with {gov}")
        times: dict[str, float] = {}
        total0 = time.monotonic()
        for c in todo:
            secs = _build_one(c, d / c.name, log)
            (d / f"{c.name}.stamp").write_text(_stamp(c, gov))
            times[c.name] = secs
            with open(d / "build-log.jsonl", "a") as f:
                f.write(json.dumps({"component": c.name, "version": c.version,
                                    "seconds": round(secs, 1),
                                    "bytes": (d / c.name).stat().st_size,
                                    "go": gov, "cpus": os.cpu_count(),
                                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                        + "\n")
        total = time.monotonic() - total0
        log(f"[build] built {len(todo)} binaries in {total:.0f}s")
        return times
