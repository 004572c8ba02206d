"""The Feast repository of a FeatureView: feature_store.yaml, generated definitions, CLI commands.

Pure functions only (no kopf, no Kubernetes client): the controller puts `feast_repo_files(...)`
into a ConfigMap mounted read-only at FEAST_REPO_MOUNT, and runs `materialize_command()` in the
materialization Job/CronJob and `serve_command(port)` in the feature server Deployment.

Every user-supplied string reaches the generated features.py through the `pyrepr` filter (a
Python literal via repr()), never raw; the Python variable names in it are ours (entity_0, ...).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import jinja2
import yaml

from mlplatform.api.common import parse_duration_seconds
from mlplatform.api.featurestore import FeatureStoreSpec
from mlplatform.api.featureview import FeatureViewSpec
from mlplatform.config import FeastConfig
from mlplatform.labels import FEAST_TAG_NAME, FEAST_TAG_NAMESPACE, short_hash
from mlplatform.render.feast_stores import store_config

FEAST_REPO_MOUNT = "/etc/feast/repo"
FEAST_WORK_DIR = "/tmp/feast-repo"
FEATURE_STORE_YAML = "feature_store.yaml"
FEATURES_PY = "features.py"

# spec dtype / valueType -> name in feast.types (features.py imports them from there)
FEAST_TYPES = {
    "FLOAT32": "Float32",
    "FLOAT64": "Float64",
    "INT32": "Int32",
    "INT64": "Int64",
    "STRING": "String",
    "BYTES": "Bytes",
    "BOOL": "Bool",
    "UNIX_TIMESTAMP": "UnixTimestamp",
    "FLOAT": "Float32",  # Feast's ValueType names, as Feast users also write them
    "DOUBLE": "Float64",
}

# Readable project names are at most this long; longer ones are truncated and hashed.
_PROJECT_READABLE_MAX = 100
_PROJECT_TRUNCATE = 90
_HASH_LEN = 10


def feast_project_name(namespace: str, name: str) -> str:
    """Feast project of the FeatureView `namespace/name`: `<namespace>__<name>`, '-' -> '_'.

    Feast 0.67 (repo_operations.is_valid_name) allows [A-Za-z0-9_-] not starting with '_' or '-',
    and refuses '-' when the online store is sqlite (project names become table names), so only
    letters, digits and '_' are emitted. The readable form `risk__driver_stats` is used when it is
    unambiguous: namespace and name contain no '--' and no '.', so the result holds exactly one
    '__' (the separator, between two alphanumerics) and maps back to (namespace, name); it is also
    at most 100 characters. Otherwise ('.' becomes '__') a hash of namespace/name is appended,
    `a__b__c_<10 hex>`: such a name holds two '__' or, truncated to 90 + 11 characters, is longer
    than 100, so it never equals a readable one; two hashed ones differ unless their hashes do.
    (Feast's SQL registry keys project ids as String(255): every name here is <= 101 characters.)
    """
    def part(s: str) -> str:
        return s.replace("-", "_").replace(".", "__")

    readable = f"{part(namespace)}__{part(name)}"
    ambiguous = any("--" in s or "." in s for s in (namespace, name))
    if not ambiguous and len(readable) <= _PROJECT_READABLE_MAX:
        return readable
    if len(readable) > _PROJECT_READABLE_MAX:
        readable = readable[:_PROJECT_TRUNCATE]  # + 11 characters below: always longer than a readable name
    digest = short_hash(f"{namespace}/{name}", _HASH_LEN)
    return f"{readable}_{digest}"


def feast_view_name(name: str) -> str:
    """Feast FeatureView name of the FeatureView `name`: '-' and '.' -> '_' (driver-stats -> driver_stats).

    Feast does not check feature view names, but the sqlite online store uses `<project>_<view>`
    as a table name, and the Python/SQL side of Feast is happiest with identifiers. There is one
    view per project, so the mapping need not be injective. Clients read `<view>:<feature>`.
    """
    return name.replace("-", "_").replace(".", "_")


def _fill(value: Any, placeholders: dict[str, str]) -> Any:
    """Fill {project}, {namespace} and {name} in every string, recursively (other braces are kept)."""
    if isinstance(value, str):
        for key, replacement in placeholders.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, placeholders) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, placeholders) for v in value]
    return value


def feature_store_yaml(namespace: str, name: str, feast: FeastConfig, store: FeatureStoreSpec | None = None,
                       project: str | None = None) -> str:
    """feature_store.yaml of the Feast project `project` (default: the FeatureView namespace/name's): the stores of
    the team's FeatureStore `store` when given (secrets as ${ENV}), else the operator configuration's."""
    project = project or feast_project_name(namespace, name)
    placeholders = {"project": project, "namespace": namespace, "name": name}
    stores = store_config(store) if store is not None else {
        "registry": _fill(feast.registry, placeholders),
        "online_store": _fill(feast.online_store, placeholders),
        "offline_store": _fill(feast.offline_store, placeholders),
    }
    config = {
        "project": project,
        "provider": "local",
        **stores,
        "entity_key_serialization_version": feast.entity_key_serialization_version,
    }
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _pyrepr(value: Any) -> str:
    """A Python literal for str/int/float/bool/None and lists/dicts of them; anything else fails."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_pyrepr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_pyrepr(k)}: {_pyrepr(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"pyrepr: unsupported type {type(value).__name__}")


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _pyident(value: str) -> str:
    """A name emitted as code (feast.types / ValueType members): must be a plain identifier."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(f"not an identifier: {value!r}")
    return value


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pyrepr"] = _pyrepr
_env.filters["pyident"] = _pyident


def feast_source_path(path: str) -> str:
    """The path FileSource gets: file:///abs/x.parquet -> /abs/x.parquet; s3://, gs://, /abs unchanged.

    Feast 0.67 (FileSource.get_uri_for_file_path) keeps only URIs with a netloc as they are and
    treats `file:///x` as a relative path joined to the repo directory, so file:// is stripped here.
    """
    parsed = urlparse(path)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return unquote(parsed.path)
    return path


def push_source_name(name: str) -> str:
    """The push source of the FeatureView `name` (source.push): what clients send to the feature server's /push."""
    return f"{feast_view_name(name)}_push"


def _source_values(view: str, spec: FeatureViewSpec) -> dict[str, Any]:
    source = spec.source
    kind = source.kind
    table_or_query = getattr(source, kind) if kind != "path" else None
    return {
        "kind": kind,
        "name": f"{view}_source",
        "path": feast_source_path(source.path) if kind == "path" else None,
        "table": table_or_query.table if table_or_query else None,
        "query": table_or_query.query if table_or_query else None,
        "timestamp_field": source.timestamp_field,
        "created_timestamp_column": source.created_timestamp_field or "",
        "push": bool(source.push),
        "push_name": f"{view}_push",
    }


def features_py(namespace: str, name: str, spec: FeatureViewSpec) -> str:
    view = feast_view_name(name)
    ttl_seconds = parse_duration_seconds(spec.ttl) if spec.ttl else 0
    entities = [
        {
            "var": f"entity_{i}",
            "name": e.name,
            "join_key": e.join_key,
            "value_type": _pyident(e.value_type),
            "feast_type": FEAST_TYPES[e.value_type],
            "description": e.description or "",
        }
        for i, e in enumerate(spec.entities)
    ]
    features = [
        {"name": f.name, "feast_type": FEAST_TYPES[f.dtype], "description": f.description or ""}
        for f in spec.features
    ]
    return _env.get_template("feast_features.py.j2").render(
        header=f"{namespace}/{name}",
        feast_types=sorted({e["feast_type"] for e in entities} | {f["feast_type"] for f in features}),
        entities=entities,
        features=features,
        source=_source_values(view, spec),
        view={
            "name": view,
            # 0 is Feast's "forever" (FeatureView's own default); None would break materialize-incremental.
            "ttl_seconds": ttl_seconds,
            "online": spec.online is not False,
            "description": spec.description or "",
            "owner": spec.owner or "",
            "tags": {FEAST_TAG_NAMESPACE: namespace, FEAST_TAG_NAME: name},
        },
    )


def feast_repo_files(namespace: str, name: str, spec: FeatureViewSpec, feast: FeastConfig,
                     store: FeatureStoreSpec | None = None) -> dict[str, str]:
    """The Feast repository of the FeatureView: the ConfigMap's data, mounted at FEAST_REPO_MOUNT."""
    return {
        FEATURE_STORE_YAML: feature_store_yaml(namespace, name, feast, store),
        FEATURES_PY: features_py(namespace, name, spec),
    }


def _copy_repo_script(repo_dir: str, work_dir: str) -> list[str]:
    # ConfigMap volumes hold symlinks into a hidden ..data dir: copy the visible entries, dereferenced.
    return [
        "set -eu",
        f"rm -rf {shlex.quote(work_dir)}",
        f"mkdir -p {shlex.quote(work_dir)}",
        f"cp -L {shlex.quote(repo_dir)}/* {shlex.quote(work_dir)}/",
        f"cd {shlex.quote(work_dir)}",
    ]


def apply_command(repo_dir: str = FEAST_REPO_MOUNT, work_dir: str = FEAST_WORK_DIR) -> list[str]:
    """Container command that only registers the definitions (`feast apply`): for online: false views."""
    script = _copy_repo_script(repo_dir, work_dir) + ["feast apply"]
    return ["/bin/sh", "-c", "\n".join(script) + "\n"]


def materialize_command(repo_dir: str = FEAST_REPO_MOUNT, work_dir: str = FEAST_WORK_DIR) -> list[str]:
    """Container command of the materialization Job/CronJob: apply, then materialize up to now (UTC)."""
    script = _copy_repo_script(repo_dir, work_dir) + [
        "feast apply",
        'feast materialize-incremental "$(date -u +%Y-%m-%dT%H:%M:%S)"',
    ]
    return ["/bin/sh", "-c", "\n".join(script) + "\n"]


def backfill_command(start: str, end: str, repo_dir: str = FEAST_REPO_MOUNT, work_dir: str = FEAST_WORK_DIR) -> list[str]:
    """Container command of a backfill Job: apply, then materialize exactly the window [start, end]."""
    script = _copy_repo_script(repo_dir, work_dir) + [
        "feast apply",
        f"feast materialize {shlex.quote(start)} {shlex.quote(end)}",
    ]
    return ["/bin/sh", "-c", "\n".join(script) + "\n"]


def serve_command(port: int, repo_dir: str = FEAST_REPO_MOUNT, work_dir: str = FEAST_WORK_DIR) -> list[str]:
    """Container command of the feature server: `feast serve` on 0.0.0.0:<port> from a writable copy."""
    port = int(port)
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    script = _copy_repo_script(repo_dir, work_dir) + [f"exec feast serve --host 0.0.0.0 --port {port}"]
    return ["/bin/sh", "-c", "\n".join(script) + "\n"]
