"""kstatus verdicts from the real library: sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, which Flux's
health checks (and `kubectl wait`-like tools built on cli-utils) use.

The `kstatus` binary is built from the wrapper module e2e/controlplane/go/cli-utils/ into the control-plane
binary cache (a tool of e2e/controlplane/build.py: `cluster.py build --with-tools`, which `make test` runs).
When it is missing here, it is built on first use (only it, not the other tools).

    verdicts([obj, ...]) -> [Verdict(kind, namespace, name, status, message), ...]   # same order
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "controlplane"))
import build  # e2e/controlplane/build.py

NAME = "kstatus"
STATUSES = ("InProgress", "Failed", "Current", "Terminating", "NotFound", "Unknown")


@dataclass(frozen=True)
class Verdict:
    kind: str
    namespace: str
    name: str
    status: str
    message: str


def component() -> build.Component:
    return next(c for c in build.tools() if c.name == NAME)


def binary() -> Path:
    """The cached binary; built (alone, under the builder's lock) when missing or stale."""
    path = build.binary_path(NAME)
    if path.is_file() and component() not in build.missing(with_tools=True):
        return path
    cache = build.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time, as build.build() does
        gov = build.go_version()
        if component() in build.missing(gov, with_tools=True):
            build._build_one(component(), path, lambda msg: print(msg, file=sys.stderr, flush=True))
            (cache / f"{NAME}.stamp").write_text(build._stamp(component(), gov))
    return path


def parse(output: str) -> list[Verdict]:
    """`<kind>/<namespace>/<name> <Status> <message>` lines."""
    out = []
    for line in output.splitlines():
        ident, status, *message = line.split(" ", 2)
        kind, namespace, name = ident.split("/", 2)
        if status not in STATUSES:
            raise ValueError(f"kstatus printed an unknown status: {line!r}")
        out.append(Verdict(kind, namespace, name, status, message[0] if message else ""))
    return out


def verdicts(objects: list[dict]) -> list[Verdict]:
    """One verdict per object, in order; one run of the binary for all of them."""
    if not objects:
        return []
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    result = subprocess.run([str(binary())], input=document, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"kstatus failed (exit {result.returncode}): {result.stderr}")
    found = parse(result.stdout)
    if len(found) != len(objects):
        raise RuntimeError(f"kstatus printed {len(found)} verdicts for {len(objects)} objects:\n{result.stdout}")
    return found


def verdict(obj: dict) -> Verdict:
    return verdicts([obj])[0]
