#!/usr/bin/env python3
"""The Gateway API standard CRDs (HTTPRoute, Gateway, ...) for the local control plane.

They come from the Go module sigs.k8s.io/gateway-api (config/crd/standard/*.yaml), fetched with
`go mod download` and cached beside the binaries, keyed by version
(``${XDG_CACHE_HOME:-~/.cache}/mlplatform/gateway-api/<version>/``). No Gateway controller is
installed: a test plays the controller by writing a route's status.

    gateway_api.py fetch                   cache the CRDs; print their folder
    gateway_api.py install --kubeconfig K  apply them (server-side) and wait until Established

Depends on the standard library and the `go` command only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import versions  # noqa: E402

MODULE = "sigs.k8s.io/gateway-api"
CRD_SUBDIR = "config/crd/standard"
# What the tests use; every standard CRD of the module is installed.
SERVED_KINDS = ("httproutes", "gateways", "gatewayclasses", "referencegrants")


def cache_dir(version: str = versions.GATEWAY_API) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlplatform" / "gateway-api" / version


def fetch(version: str = versions.GATEWAY_API) -> Path:
    """The folder of the cached standard CRD files, downloading the module once."""
    target = cache_dir(version)
    if (target / ".complete").is_file():
        return target
    env = {**os.environ, "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"), "GOFLAGS": "-mod=mod"}
    result = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{version}"], capture_output=True,
                            text=True, env=env, cwd=str(HERE))
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{version} failed: {result.stderr or result.stdout}")
    source = Path(json.loads(result.stdout)["Dir"]) / CRD_SUBDIR
    files = sorted(source.glob("*.yaml"))
    if not files:
        raise RuntimeError(f"{source}: no CRD files in {MODULE}@{version}")
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, tmp / f.name)
    (tmp / ".complete").write_text(f"{MODULE}@{version}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def crd_file(kind_plural: str, version: str = versions.GATEWAY_API) -> Path:
    return fetch(version) / f"gateway.networking.k8s.io_{kind_plural}.yaml"


def install(kubectl: str, kubeconfig: str, version: str = versions.GATEWAY_API, timeout: str = "60s") -> None:
    """Apply the standard CRDs (and the module's ValidatingAdmissionPolicy) and wait until they are served."""
    folder = fetch(version)
    base = [kubectl, "--kubeconfig", kubeconfig]

    def run(*args: str) -> None:
        result = subprocess.run([*base, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr}")

    run("apply", "--server-side", "--force-conflicts", "-f", str(folder))
    for plural in SERVED_KINDS:
        run("wait", "--for=condition=Established", f"crd/{plural}.gateway.networking.k8s.io", f"--timeout={timeout}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch")
    inst = sub.add_parser("install")
    inst.add_argument("--kubeconfig", required=True)
    inst.add_argument("--kubectl", default=None)
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(fetch())
        return 0
    import build  # only for the kubectl built with the control plane
    kubectl = args.kubectl or (str(build.binary_path("kubectl")) if build.binary_path("kubectl").is_file()
                               else shutil.which("kubectl") or "kubectl")
    install(kubectl, args.kubeconfig)
    print(f"Gateway API {versions.GATEWAY_API} standard CRDs installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
