"""FeatureView: a declarative Feast feature view, materialized on a schedule and served."""

from __future__ import annotations

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


class Source(ApiModel):
    path: str = required("Parquet file: s3://, gs://, file:// or an absolute path readable by the Feast pods.",
                         pattern=SOURCE_PATH_PATTERN)
    timestamp_field: str = required("Event timestamp column.", pattern=IDENTIFIER_PATTERN)
    created_timestamp_field: str | None = field("Row creation timestamp column, to pick the latest duplicate.",
                                                pattern=IDENTIFIER_PATTERN)


class Materialization(ApiModel):
    schedule: str | None = field("Cron schedule of incremental materialization (default hourly).", pattern=CRON_PATTERN)
    resources: Resources | None = field("Resources of the materialization pods.")


class Freshness(ApiModel):
    max_staleness: Duration = required("Fresh is False once now - lastMaterializedAt exceeds this, e.g. 1h.")


class Serving(ApiModel):
    replicas: int | None = field("Feature server replicas (default 1).", ge=0, le=100)
    resources: Resources | None = field("Resources of each feature server pod.")


class FeatureViewSpec(ApiModel):
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


class FeatureViewStatus(CommonStatus):
    last_materialized_at: str | None = field("End of the last successful materialization window.",
                                             json_schema_extra={"format": "date-time"})
    last_materialization_job: str | None = field("Name of the last materialization Job seen succeeding.")
    serving_url: str | None = field("In-cluster URL of the feature server, once it is Ready.")
    materialization_spec_hash: str | None = field("Hash of the spec the last on-change materialization was started for.")
    schema_hash: str | None = field("Hash of the entities and features with their types.")
    materialized_until: str | None = field("Watermark: end of the last successful materialization window.",
                                           json_schema_extra={"format": "date-time"})


class FeatureView(ApiModel):
    """A Feast feature view, its own Feast project: materialized into the online store on change and on a
    schedule, served by a feature server, with freshness tracked in status."""

    spec: FeatureViewSpec = Field(..., description="Desired state of the FeatureView.")
