"""A FeatureStore's stores as Feast configuration: the feature_store.yaml blocks and the env that holds the secrets.

Pure functions. A secret never appears here: each `...SecretRef` becomes an env var of the Feast pods (valueFrom
secretKeyRef) and the YAML names it as `${VAR}`, which Feast expands when it loads feature_store.yaml
(feast.repo_config.load_repo_config: os.path.expandvars over the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.featurestore import FeatureStoreSpec, PostgresStore, SecretKeyRef

OFFLINE_PASSWORD_ENV = "FEAST_OFFLINE_STORE_PASSWORD"
ONLINE_PASSWORD_ENV = "FEAST_ONLINE_STORE_PASSWORD"
REGISTRY_URL_ENV = "FEAST_REGISTRY_URL"
DEFAULT_REGISTRY_CACHE_TTL_SECONDS = 60

# spec field names -> where they are in feature_store.yaml (for messages that name the store)
STORE_FIELDS = {"offline_store": "offlineStore", "online_store": "onlineStore", "registry": "registry"}


@dataclass(frozen=True)
class SecretEnv:
    name: str
    ref: SecretKeyRef

    def to_env(self) -> dict[str, Any]:
        return {"name": self.name, "valueFrom": {"secretKeyRef": {"name": self.ref.name, "key": self.ref.key}}}


def _ref(env: str) -> str:
    return "${" + env + "}"


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _postgres(block: PostgresStore, password_env: str) -> dict[str, Any]:
    return _drop_none({
        "type": "postgres",
        "host": block.host,
        "port": block.port or 5432,
        "database": block.database,
        "db_schema": block.db_schema,
        "user": block.user,
        "password": _ref(password_env),
        "sslmode": block.ssl_mode,
    })


def offline_store_config(spec: FeatureStoreSpec) -> dict[str, Any]:
    store = spec.offline_store
    if store.type == "file":
        return {"type": "file"}
    if store.type == "postgres":
        return _postgres(store.postgres, OFFLINE_PASSWORD_ENV)
    if store.type == "bigquery":
        b = store.bigquery
        return _drop_none({"type": "bigquery", "project_id": b.project_id, "dataset": b.dataset, "location": b.location,
                           "gcs_staging_location": b.gcs_staging_location})
    if store.type == "snowflake":
        s = store.snowflake
        return _drop_none({"type": "snowflake.offline", "account": s.account, "user": s.user,
                           "password": _ref(OFFLINE_PASSWORD_ENV), "role": s.role, "warehouse": s.warehouse,
                           "database": s.database, "schema": s.db_schema})
    if store.type == "redshift":
        r = store.redshift
        return _drop_none({"type": "redshift", "region": r.region, "cluster_id": r.cluster_id, "user": r.user,
                           "workgroup": r.workgroup, "database": r.database,
                           "s3_staging_location": r.s3_staging_location, "iam_role": r.iam_role})
    if store.type == "spark":
        s = store.spark
        return _drop_none({"type": "spark", "spark_conf": s.spark_conf if s else None,
                           "staging_location": s.staging_location if s else None, "region": s.region if s else None})
    raise ValueError(f"offlineStore.type: unknown {store.type!r}")


def online_store_config(spec: FeatureStoreSpec) -> dict[str, Any]:
    store = spec.online_store
    if store.type == "redis":
        r = store.redis
        connection = r.connection_string
        if r.password_secret_ref is not None:
            connection += f",password={_ref(ONLINE_PASSWORD_ENV)}"
        return _drop_none({"type": "redis", "redis_type": r.redis_type, "connection_string": connection,
                           "key_ttl_seconds": r.key_ttl_seconds})
    if store.type == "postgres":
        return _postgres(store.postgres, ONLINE_PASSWORD_ENV)
    if store.type == "sqlite":
        return _drop_none({"type": "sqlite", "path": store.sqlite.path if store.sqlite else None})
    if store.type == "dynamodb":
        d = store.dynamodb
        return _drop_none({"type": "dynamodb", "region": d.region, "endpoint_url": d.endpoint_url})
    raise ValueError(f"onlineStore.type: unknown {store.type!r}")


def registry_config(spec: FeatureStoreSpec) -> dict[str, Any]:
    registry = spec.registry
    ttl = registry.cache_ttl_seconds if registry.cache_ttl_seconds is not None else DEFAULT_REGISTRY_CACHE_TTL_SECONDS
    if registry.type == "sql":
        return {"registry_type": "sql", "path": _ref(REGISTRY_URL_ENV), "cache_ttl_seconds": ttl}
    return {"registry_type": "file", "path": registry.path, "cache_ttl_seconds": ttl}


def secret_env(spec: FeatureStoreSpec) -> list[SecretEnv]:
    """The env vars that carry the store's secrets into Feast pods, each from its Secret key."""
    out = []
    offline = spec.offline_store
    offline_block = getattr(offline, offline.type, None)
    if offline_block is not None and getattr(offline_block, "password_secret_ref", None) is not None:
        out.append(SecretEnv(OFFLINE_PASSWORD_ENV, offline_block.password_secret_ref))
    online = spec.online_store
    online_block = getattr(online, online.type, None)
    if online_block is not None and getattr(online_block, "password_secret_ref", None) is not None:
        out.append(SecretEnv(ONLINE_PASSWORD_ENV, online_block.password_secret_ref))
    if spec.registry.url_secret_ref is not None:
        out.append(SecretEnv(REGISTRY_URL_ENV, spec.registry.url_secret_ref))
    return out


def store_config(spec: FeatureStoreSpec) -> dict[str, Any]:
    """registry, online_store and offline_store of feature_store.yaml."""
    return {
        "registry": registry_config(spec),
        "online_store": online_store_config(spec),
        "offline_store": offline_store_config(spec),
    }
