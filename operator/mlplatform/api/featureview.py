"""FeatureView: a declarative Feast feature view, materialized on a schedule and served."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .common import (
    CRON_PATTERN,
    ApiModel,
    CommonStatus,
    Duration,
    Resources,
    Rule,
    field,
    required,
)

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TABLE_PATTERN = r"^[A-Za-z_][-A-Za-z0-9_$]*(\.[A-Za-z_][-A-Za-z0-9_$]*){0,2}$"
RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
STORE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
SOURCE_KINDS = ("path", "postgres", "bigquery", "snowflake", "redshift")


def parse_rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))

SOURCE_PATH_PATTERN = r"^((s3|gs|file)://.+|/.+)$"

EntityValueType = Literal["INT32", "INT64", "STRING", "BYTES"]
FeatureDtype = Literal["INT32", "INT64", "FLOAT32", "FLOAT64", "FLOAT", "DOUBLE", "STRING", "BYTES", "BOOL",
                       "UNIX_TIMESTAMP"]


class Entity(ApiModel):
    name: str = required("Feast entity name (a Python identifier).", pattern=IDENTIFIER_PATTERN, max_length=63)
    join_key: str = required("Column that identifies the entity in the source and in online lookups.",
                             pattern=IDENTIFIER_PATTERN, max_length=63)
    value_type: EntityValueType = required("Type of the join key: INT32 INT64 STRING BYTES.")
    description: str | None = field("What the entity is.")


class Feature(ApiModel):
    name: str = required("Feature (column) name (a Python identifier).", pattern=IDENTIFIER_PATTERN, max_length=63)
    dtype: FeatureDtype = required("INT32 INT64 FLOAT32 FLOAT64 STRING BYTES BOOL UNIX_TIMESTAMP "
                                   "(FLOAT and DOUBLE, Feast's ValueType names, mean FLOAT32 and FLOAT64).")
    description: str | None = field("What the feature means.")


class TableOrQuery(ApiModel):
    table: str | None = field("Table (schema.table, or project.dataset.table for BigQuery).", pattern=TABLE_PATTERN,
                              max_length=512)
    query: str | None = field("A SELECT whose rows are the source (with the timestamp and entity columns).",
                              min_length=1, max_length=20000)
    rules = (
        Rule("has(self.table) != has(self.query)", "set exactly one of table or query", None,
             lambda s: (s.table is None) != (s.query is None)),
    )


class Source(ApiModel):
    path: str | None = field("Parquet file: s3://, gs://, file:// or an absolute path readable by the Feast pods "
                             "(the store's offlineStore type file).", pattern=SOURCE_PATH_PATTERN)
    postgres: TableOrQuery | None = field("A table or query of the store's PostgreSQL offline store.")
    bigquery: TableOrQuery | None = field("A table or query of the store's BigQuery offline store.")
    snowflake: TableOrQuery | None = field("A table or query of the store's Snowflake offline store.")
    redshift: TableOrQuery | None = field("A table or query of the store's Redshift offline store.")
    push: bool | None = field("Also a push source: fresh rows sent to the feature server's /push (push source "
                              "`<view>_push`) reach the online store at once; the batch source above still backfills.")
    timestamp_field: str = required("Event timestamp column.", pattern=IDENTIFIER_PATTERN)
    created_timestamp_field: str | None = field("Row creation timestamp column, to pick the latest duplicate.",
                                                pattern=IDENTIFIER_PATTERN)
    rules = (
        Rule("[has(self.path), has(self.postgres), has(self.bigquery), has(self.snowflake), has(self.redshift)]"
             ".filter(x, x).size() == 1",
             "source: set exactly one of path, postgres, bigquery, snowflake, redshift", None,
             lambda s: sum(getattr(s, k) is not None for k in SOURCE_KINDS) == 1),
    )

    @property
    def kind(self) -> str:
        """Which of SOURCE_KINDS is set."""
        return next(k for k in SOURCE_KINDS if getattr(self, k) is not None)


class Backfill(ApiModel):
    start: str = required("Start of the window (RFC 3339), inclusive.", pattern=RFC3339_PATTERN,
                          json_schema_extra={"format": "date-time"})
    end: str = required("End of the window (RFC 3339).", pattern=RFC3339_PATTERN, json_schema_extra={"format": "date-time"})
    rules = (
        Rule("timestamp(self.start) < timestamp(self.end)", "backfill.start must be before backfill.end", "start",
             lambda b: parse_rfc3339(b.start) < parse_rfc3339(b.end)),
    )


class Materialization(ApiModel):
    schedule: str | None = field("Cron schedule of incremental materialization (default hourly).", pattern=CRON_PATTERN)
    time_zone: str | None = field("Time zone of the schedule (the CronJob's timeZone), e.g. Europe/Dublin; default UTC.",
                                  pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$", max_length=64)
    backfill: Backfill | None = field("A one-off materialization of this window (a Job per change of it); its state "
                                      "is in status.backfill.")
    resources: Resources | None = field("Resources of the materialization pods.")


class Freshness(ApiModel):
    max_staleness: Duration = required("Fresh is False once now - lastMaterializedAt exceeds this, e.g. 1h.")


class ServingTargets(ApiModel):
    cpu_utilization: int | None = field("Average CPU utilization, percent of the request.", ge=1, le=100)
    memory_utilization: int | None = field("Average memory utilization, percent of the request.", ge=1, le=100)


class ServingAutoscaling(ApiModel):
    min_replicas: int = required("Lower bound of the HorizontalPodAutoscaler.", ge=1, le=100)
    max_replicas: int = required("Upper bound of the HorizontalPodAutoscaler.", ge=1, le=100)
    targets: ServingTargets = required("Metrics to scale on; at least one.", json_schema_extra={"minProperties": 1})
    rules = (
        Rule("self.minReplicas <= self.maxReplicas", "serving.autoscaling.minReplicas must be <= maxReplicas",
             "minReplicas", lambda a: a.min_replicas <= a.max_replicas),
        Rule(None, "serving.autoscaling.targets needs cpuUtilization or memoryUtilization", "targets",
             lambda a: bool(a.targets.model_dump(exclude_none=True))),
    )


class Serving(ApiModel):
    replicas: int | None = field("Feature server replicas (default 1); with 2 or more a PodDisruptionBudget keeps all "
                                 "but one through voluntary disruptions. Ignored under autoscaling.", ge=0, le=100)
    autoscaling: ServingAutoscaling | None = field("A HorizontalPodAutoscaler of the feature server (it then owns the "
                                                   "replica count).")
    resources: Resources | None = field("Resources of each feature server pod.")


class FeatureViewSpec(ApiModel):
    store: str | None = field("The FeatureStore (in this namespace) whose stores this view uses. Absent: the "
                              "namespace's FeatureStore `default` when there is one, else the operator's stores.",
                              pattern=STORE_NAME_PATTERN, max_length=40)
    description: str | None = field("What the feature view holds.")
    owner: str | None = field("Owning team or person (e-mail).")
    entities: list[Entity] = required(
        "Entities the features are keyed by; at least one.",
        min_length=1,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    features: list[Feature] = required(
        "Feature columns and their types; at least one.",
        min_length=1,
        max_length=500,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    source: Source = required("Batch source the features are materialized from.")
    ttl: Duration | None = field("How long a feature value stays valid for lookups, e.g. 24h; absent means forever.")
    online: bool | None = field("Materialize into the online store and serve it (default true).")
    materialization: Materialization | None = field("Schedule and resources of materialization.")
    freshness: Freshness | None = field("Staleness budget tracked by the Fresh condition.")
    serving: Serving | None = field("Feature server (feast serve); requires online.")
    suspend: bool | None = field("Suspend scheduled materialization.")
    rules = (
        Rule(
            "!has(self.serving) || !has(self.online) || self.online",
            "spec.serving requires spec.online to be true",
            "serving",
            lambda s: s.serving is None or s.online is not False,
        ),
        Rule(
            "self.entities.all(a, self.entities.exists_one(b, b.joinKey == a.joinKey))",
            "entities must have distinct joinKeys",
            "entities",
            lambda s: len({e.join_key for e in s.entities}) == len(s.entities),
        ),
        Rule(
            "self.features.all(f, f.name != self.source.timestampField && "
            "(!has(self.source.createdTimestampField) || f.name != self.source.createdTimestampField))",
            "a feature may not have the name of source.timestampField or source.createdTimestampField",
            "features",
            lambda s: not ({f.name for f in s.features}
                           & {s.source.timestamp_field, s.source.created_timestamp_field}),
        ),
        Rule(
            "self.features.all(f, !self.entities.exists(e, e.joinKey == f.name))",
            "a feature may not have the name of an entity's joinKey",
            "features",
            lambda s: not ({f.name for f in s.features} & {e.join_key for e in s.entities}),
        ),
    )


class BackfillStatus(ApiModel):
    start: str | None = field("Start of the window.", json_schema_extra={"format": "date-time"})
    end: str | None = field("End of the window.", json_schema_extra={"format": "date-time"})
    job: str | None = field("The backfill Job.")
    phase: str | None = field("Pending, Running, Succeeded or Failed.")


class FeatureViewStatus(CommonStatus):
    last_materialized_at: str | None = field("End of the last successful materialization window.",
                                             json_schema_extra={"format": "date-time"})
    last_materialization_job: str | None = field("Name of the last materialization Job seen succeeding.")
    serving_url: str | None = field("In-cluster URL of the feature server, once it is Ready.")
    materialization_spec_hash: str | None = field("Hash of the spec the last on-change materialization was started for.")
    schema_hash: str | None = field("Hash of the entities and features with their types: what a model trained on "
                                    "this view depends on.")
    materialized_until: str | None = field("Watermark: end of the last successfully materialized window.",
                                           json_schema_extra={"format": "date-time"})
    backfill: BackfillStatus | None = field("The backfill window of the spec and how its Job went.")


class FeatureView(ApiModel):
    """A Feast feature view, its own Feast project: materialized into the online store on change and on a
    schedule, served by a feature server, with freshness tracked in status."""

    spec: FeatureViewSpec = Field(..., description="Desired state of the FeatureView.")
