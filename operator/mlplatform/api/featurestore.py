"""FeatureStore: a team's Feast stores (offline, online, registry), used by the FeatureViews of its namespace.

Credentials are only Secret references (`...SecretRef {name, key}`): they reach the Feast pods as env from
secretKeyRef and feature_store.yaml names them as `${ENV}` (Feast expands it when it loads the file); no
value is ever in the spec, a ConfigMap or status. A field for an inline value (password, url, ...) does not
exist, so such a manifest is refused naming it (pydantic: extra fields forbidden; API server: unknown field).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import DNS_SUBDOMAIN_PATTERN, ApiModel, CommonStatus, Rule, field, required

OFFLINE_TYPES = ("file", "postgres", "bigquery", "snowflake", "redshift", "spark")
ONLINE_TYPES = ("redis", "postgres", "sqlite", "dynamodb")
# Types that need their settings block (the others may have one: sqlite's path).
_BLOCK_REQUIRED = {"postgres", "bigquery", "snowflake", "redshift", "redis", "dynamodb"}
_BLOCK_OPTIONAL = {"spark", "sqlite"}
HOST_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$"


class SecretKeyRef(ApiModel):
    name: str = required("Secret in the FeatureStore's namespace.", pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = required("Key within the Secret.", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class PostgresStore(ApiModel):
    host: str = required("Host name of the PostgreSQL server, e.g. pg.data.svc.", pattern=HOST_PATTERN, max_length=253)
    port: int | None = field("Port (default 5432).", ge=1, le=65535)
    database: str = required("Database.", min_length=1, max_length=63)
    db_schema: str | None = field("Schema (default public).", min_length=1, max_length=63)
    user: str = required("User name.", min_length=1, max_length=63)
    password_secret_ref: SecretKeyRef = required("Secret key holding the password.")
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = field(
        "libpq sslmode (default require, as Feast's).")


class BigQueryStore(ApiModel):
    project_id: str | None = field("GCP project of the data (default: the credentials').", max_length=63)
    dataset: str | None = field("Dataset for temporary tables (default feast).", max_length=1024)
    location: str | None = field("BigQuery location, e.g. EU.", max_length=63)
    gcs_staging_location: str | None = field("gs:// prefix for offloaded results.", pattern=r"^gs://.+$")


class SnowflakeStore(ApiModel):
    account: str = required("Snowflake account identifier.", min_length=1)
    user: str = required("User name.", min_length=1)
    password_secret_ref: SecretKeyRef = required("Secret key holding the password.")
    role: str | None = field("Role.")
    warehouse: str | None = field("Warehouse.")
    database: str = required("Database.", min_length=1)
    db_schema: str | None = field("Schema (default PUBLIC).")


class RedshiftStore(ApiModel):
    region: str = required("AWS region, e.g. eu-west-1.", min_length=1)
    cluster_id: str | None = field("Provisioned cluster id (with user); or workgroup for Serverless.")
    user: str | None = field("Database user of a provisioned cluster.")
    workgroup: str | None = field("Redshift Serverless workgroup.")
    database: str = required("Database.", min_length=1)
    s3_staging_location: str = required("s3:// prefix for unloads.", pattern=r"^s3://.+$")
    iam_role: str = required("IAM role ARN Redshift assumes for unloads.", min_length=1)
    rules = (
        Rule("(has(self.clusterId) && has(self.user)) || has(self.workgroup)",
             "set clusterId and user (provisioned cluster) or workgroup (Serverless)", None,
             lambda s: bool(s.cluster_id and s.user) or bool(s.workgroup)),
    )


class SparkStore(ApiModel):
    spark_conf: dict[str, str] | None = field("Spark session configuration overlay.")
    staging_location: str | None = field("Remote path for batch materialization.")
    region: str | None = field("AWS region of an s3 staging location.")


class RedisStore(ApiModel):
    connection_string: str = required(
        "host:port[,param=value...] as Feast reads it, without a password (passwordSecretRef adds it).",
        pattern=r"^[^,\s]+:[0-9]+(,[a-z_]+=[^,\s]+)*$")
    redis_type: Literal["redis", "redis_cluster", "redis_sentinel"] | None = field("redis (default), redis_cluster or "
                                                                                  "redis_sentinel.")
    password_secret_ref: SecretKeyRef | None = field("Secret key holding the password (AUTH).")
    key_ttl_seconds: int | None = field("Expire entity keys after this long.", ge=1)
    rules = (
        Rule("!self.connectionString.contains('password')",
             "onlineStore.redis.connectionString may not carry a password: use passwordSecretRef", "connectionString",
             lambda r: "password" not in r.connection_string),
    )


class SqliteStore(ApiModel):
    path: str | None = field("Database file inside the pod (default: Feast's, in the repo copy; not shared between pods).",
                             pattern=r"^/.+$")


class DynamoDBStore(ApiModel):
    region: str = required("AWS region.", min_length=1)
    endpoint_url: str | None = field("Endpoint override (e.g. a local DynamoDB).", pattern=r"^https?://.+$")


def _block_rules(types: tuple[str, ...], where: str) -> tuple[Rule, ...]:
    rules = []
    for t in types:
        if t in _BLOCK_REQUIRED:
            rules.append(Rule(
                f"has(self.{t}) == (self.type == '{t}')",
                f"{where}.{t} is set exactly when {where}.type is {t}",
                t,
                lambda s, t=t: (getattr(s, t) is not None) == (s.type == t),
            ))
        elif t in _BLOCK_OPTIONAL:
            rules.append(Rule(
                f"!has(self.{t}) || self.type == '{t}'",
                f"{where}.{t} may be set only when {where}.type is {t}",
                t,
                lambda s, t=t: getattr(s, t) is None or s.type == t,
            ))
    return tuple(rules)


class OfflineStore(ApiModel):
    type: Literal["file", "postgres", "bigquery", "snowflake", "redshift", "spark"] = required(
        "file (Parquet files, read by Dask) | postgres | bigquery | snowflake | redshift | spark.")
    postgres: PostgresStore | None = field("Settings of type postgres.")
    bigquery: BigQueryStore | None = field("Settings of type bigquery (credentials: the pods' workload identity).")
    snowflake: SnowflakeStore | None = field("Settings of type snowflake.")
    redshift: RedshiftStore | None = field("Settings of type redshift (credentials: the pods' AWS identity).")
    spark: SparkStore | None = field("Settings of type spark.")
    rules = _block_rules(OFFLINE_TYPES, "offlineStore")


class OnlineStore(ApiModel):
    type: Literal["redis", "postgres", "sqlite", "dynamodb"] = required("redis | postgres | sqlite | dynamodb.")
    redis: RedisStore | None = field("Settings of type redis.")
    postgres: PostgresStore | None = field("Settings of type postgres.")
    sqlite: SqliteStore | None = field("Settings of type sqlite (a file per pod: for trials only).")
    dynamodb: DynamoDBStore | None = field("Settings of type dynamodb (credentials: the pods' AWS identity).")
    rules = _block_rules(ONLINE_TYPES, "onlineStore")


class Registry(ApiModel):
    type: Literal["sql", "file"] = required("sql (a SQLAlchemy URL, shared by every pod) | file (a path or s3:// gs://).")
    url_secret_ref: SecretKeyRef | None = field(
        "type sql: Secret key holding the SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/db.")
    path: str | None = field("type file: registry file, e.g. s3://bucket/registry.db or /data/registry.db.",
                             pattern=r"^((s3|gs)://.+|/.+)$")
    cache_ttl_seconds: int | None = field("How long clients cache the registry (default 60).", ge=0)
    rules = (
        Rule("has(self.urlSecretRef) == (self.type == 'sql')", "registry.urlSecretRef is set exactly when registry.type "
             "is sql", "urlSecretRef", lambda s: (s.url_secret_ref is not None) == (s.type == "sql")),
        Rule("has(self.path) == (self.type == 'file')", "registry.path is set exactly when registry.type is file",
             "path", lambda s: (s.path is not None) == (s.type == "file")),
    )


class FeatureStoreSpec(ApiModel):
    offline_store: OfflineStore = required("Where historical feature data is read (and point-in-time joins run).")
    online_store: OnlineStore = required("Where the latest values are materialized and served from.")
    registry: Registry = required("Where the Feast definitions of the store's FeatureViews are kept.")


class FeatureStoreStatus(CommonStatus):
    config_hash: str | None = field("Hash of the rendered feature_store.yaml the last connectivity check ran against.")
    checked_at: str | None = field("When the last connectivity check succeeded.", json_schema_extra={"format": "date-time"})


class FeatureStore(ApiModel):
    """A team's Feast stores: offline store, online store and registry. FeatureViews in the namespace use the one
    they name in spec.store (absent: `default`). Ready once Feast accepts the configuration and a connectivity
    check Job reached every store."""

    spec: FeatureStoreSpec = Field(..., description="Desired state of the FeatureStore.")
