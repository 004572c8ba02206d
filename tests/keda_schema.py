"""The ScaledObject schema of KEDA's CRD (keda.sh/v1alpha1), for validating what the operator renders.

Read from the Go module github.com/kedacore/keda/v2 (config/crd/bases/keda.sh_scaledobjects.yaml), fetched with
`go mod download` once and cached beside the other tools, keyed by version
(``${XDG_CACHE_HOME:-~/.cache}/mlplatform/keda-crds/<version>/``), as tests/gateway_schema.py does for HTTPRoute."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import zipfile
from pathlib import Path

import jsonschema
import yaml

from .gateway_schema import _strict

MODULE = "github.com/kedacore/keda/v2"
VERSION = "v2.21.1"
CRD_FILE = "config/crd/bases/keda.sh_scaledobjects.yaml"


def crd_path(version: str = VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = base / "mlplatform" / "keda-crds" / version / Path(CRD_FILE).name
    if target.is_file():
        return target
    env = {**os.environ, "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"), "GOFLAGS": "-mod=mod"}
    result = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{version}"], capture_output=True, text=True,
                            env=env, check=False)
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    # The module's zip is downloaded and verified even where this Go is older than the module's go directive
    # (which only refuses to extract it): the CRD is read from the zip.
    if not info.get("Zip") or not Path(info["Zip"]).is_file():
        raise RuntimeError(f"go mod download {MODULE}@{version} failed: {result.stderr or result.stdout}")
    with zipfile.ZipFile(info["Zip"]) as archive:
        data = archive.read(f"{MODULE}@{version}/{CRD_FILE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


@functools.cache
def scaled_object_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(crd_path().read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def validate_scaled_object(obj: dict) -> None:
    errors = sorted(scaled_object_validator().iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
