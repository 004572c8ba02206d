"""Blocks shared by every kind: the base model, value types, resources, scheduling, status.

Each constraint is written once, as a pydantic constraint or a `Rule`, and is emitted both as a
Python check (for `mlplatform validate`) and as an OpenAPI/CEL rule in the CRD (for the API server).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator
from pydantic.alias_generators import to_camel

GROUP = "mlplatform.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# The API server's own Quantity grammar (resource.Quantity), as controller-gen emits it.
# Negative values are refused: every quantity in this API is a request or a limit.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Durations as Feast and most operators write them: one or more <number><unit>, e.g. 1h30m, 7d.
DURATION_PATTERN = r"^([0-9]+(s|m|h|d))+$"
DURATION_UNITS_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Five-field cron, or one of the @-macros that the CronJob controller understands.
_CRON_FIELD = r"(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*"
CRON_PATTERN = (
    r"^((@(yearly|annually|monthly|weekly|daily|midnight|hourly))|"
    rf"({_CRON_FIELD} ){{4}}{_CRON_FIELD})$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
INT_OR_PERCENT_PATTERN = r"^([0-9]+%?)$"
GPU_MIG_PATTERN = r"^[0-9]+g\.[0-9]+gb$"


def parse_duration_seconds(value: str) -> int:
    """'1h30m' -> 5400. The value has already matched DURATION_PATTERN."""
    return sum(int(n) * DURATION_UNITS_SECONDS[u] for n, u in re.findall(r"([0-9]+)(s|m|h|d)", value))


class Rule:
    """A cross-field rule: CEL for the API server, a Python predicate for the CLI, one message.
    cel=None when the schema already says it (e.g. minProperties) and CEL cannot."""

    def __init__(self, cel: str | None, message: str, field: str | None, check):
        self.cel = cel
        self.message = message
        self.field = field  # dotted path relative to the object the rule sits on, e.g. "minReplicas"
        self.check = check

    def as_validation(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"rule": self.cel, "message": self.message}
        if self.field:
            rule["fieldPath"] = "." + self.field
        return rule


class RuleViolation(ValueError):
    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _schema_with_rules(schema: dict[str, Any], cls: type) -> None:
    """Carry a model's cross-field rules into its JSON schema, as the CRD's CEL validations."""
    validations = [r.as_validation() for r in getattr(cls, "rules", ()) if r.cel]
    if validations:
        schema["x-kubernetes-validations"] = validations


class ApiModel(BaseModel):
    """camelCase in YAML, unknown fields refused, every field described."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=_schema_with_rules,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self):
        for rule in type(self).rules:
            if not rule.check(self):
                raise RuleViolation(rule.field, rule.message)
        return self

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def field(description: str, default: Any = None, **kwargs) -> Any:
    return Field(default, description=description, **kwargs)


def required(description: str, **kwargs) -> Any:
    return Field(..., description=description, **kwargs)


def _int_or_pattern(pattern: str, allowed: str):
    def check(value):
        if isinstance(value, int) and value < 0:
            raise ValueError(f"allowed: {allowed}")
        if isinstance(value, str) and not re.match(pattern, value):
            raise ValueError(f"allowed: {allowed}")
        return value

    return AfterValidator(check)


Quantity = Annotated[
    StrictInt | str,
    _int_or_pattern(QUANTITY_PATTERN, "a Kubernetes quantity such as 500m, 4, 16Gi"),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN, "minimum": 0}),
]
IntOrPercent = Annotated[
    StrictInt | str,
    _int_or_pattern(INT_OR_PERCENT_PATTERN, "a non-negative integer or a percentage such as 25%"),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": INT_OR_PERCENT_PATTERN, "minimum": 0}),
]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
ResourceName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]


# --- env -------------------------------------------------------------------------------------


class KeyRef(ApiModel):
    name: ResourceName = required("Name of the Secret or ConfigMap in the resource's namespace.")
    key: str = required("Key within it.", min_length=1)
    optional: bool | None = field("Whether the key may be absent.")


class EnvValueFrom(ApiModel):
    secret_key_ref: KeyRef | None = field("A key of a Secret.")
    config_map_key_ref: KeyRef | None = field("A key of a ConfigMap.")
    rules = (
        Rule(
            "has(self.secretKeyRef) != has(self.configMapKeyRef)",
            "set exactly one of secretKeyRef or configMapKeyRef",
            None,
            lambda s: (s.secret_key_ref is None) != (s.config_map_key_ref is None),
        ),
    )


class EnvVar(ApiModel):
    name: str = required("Environment variable name.", pattern=ENV_NAME_PATTERN)
    value: str | None = field("Literal value.")
    value_from: EnvValueFrom | None = field(
        "Value from a Secret or ConfigMap key (secretKeyRef or configMapKeyRef only)."
    )
    rules = (
        Rule(
            "!(has(self.value) && has(self.valueFrom))",
            "set value or valueFrom, not both",
            None,
            lambda s: not (s.value is not None and s.value_from is not None),
        ),
    )


class NamedRef(ApiModel):
    name: ResourceName = required("Name of the object in the resource's namespace.")
    optional: bool | None = field("Whether the object may be absent.")


class EnvFromSource(ApiModel):
    prefix: str | None = field("Prefix added to every variable name.")
    secret_ref: NamedRef | None = field("All keys of a Secret as variables.")
    config_map_ref: NamedRef | None = field("All keys of a ConfigMap as variables.")
    rules = (
        Rule(
            "has(self.secretRef) != has(self.configMapRef)",
            "set exactly one of secretRef or configMapRef",
            None,
            lambda s: (s.secret_ref is None) != (s.config_map_ref is None),
        ),
    )


class ContainerBlock(ApiModel):
    """image/command/args/env/envFrom: the shared block of every workload container."""

    command: list[str] | None = field("Entrypoint; the image's when absent.")
    args: list[str] | None = field("Arguments to the entrypoint.")
    env: list[EnvVar] | None = field(
        "Environment variables: name/value, or valueFrom secretKeyRef / configMapKeyRef.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = field("Whole Secrets or ConfigMaps as environment (secretRef / configMapRef).")


# --- resources and scheduling ----------------------------------------------------------------


class Gpu(ApiModel):
    count: int = required("GPUs per pod: the nvidia.com/gpu (or MIG) limit.", ge=1, le=64)
    type: str | None = field(
        "GPU model, e.g. nvidia-h100-80gb; the operator configuration maps it to node labels.",
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
    )
    mig: str | None = field(
        "MIG profile such as 1g.10gb: requests nvidia.com/mig-<profile> instead of nvidia.com/gpu.",
        pattern=GPU_MIG_PATTERN,
    )


class Resources(ApiModel):
    cpu: Quantity | None = field("CPU request per pod, e.g. \"4\" or 500m.")
    memory: Quantity | None = field("Memory request and limit per pod, e.g. 16Gi.")
    gpu: Gpu | None = field("GPUs per pod; absent means a CPU-only pod.")
    shared_memory: Quantity | None = field(
        "/dev/shm of each pod, as an in-memory emptyDir of this size, e.g. 16Gi (NCCL and data loaders fail on "
        "the 64Mi container default). GPU pods get the operator configuration's default when unset; CPU pods "
        "get none unless set; \"0\" turns it off. Counted in the memory request and limit (memory + sharedMemory)."
    )


class Toleration(ApiModel):
    key: str | None = field("Taint key the toleration applies to; empty matches all keys.")
    operator: Literal["Exists", "Equal"] | None = field("Exists or Equal (default Equal).")
    value: str | None = field("Taint value to match with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = field("Taint effect to match; empty matches all.")
    toleration_seconds: int | None = field("For NoExecute: how long the pod stays bound after the taint appears.", ge=0)


class Scheduling(ApiModel):
    node_selector: dict[str, str] | None = field("Node labels every pod must match (merged with the GPU type's labels).")
    tolerations: list[Toleration] | None = field("Extra tolerations; GPU pods always tolerate nvidia.com/gpu.")
    priority_class_name: str | None = field("PriorityClass of the pods.")


# --- status ----------------------------------------------------------------------------------


class Condition(ApiModel):
    type: str = required("Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = required("True, False or Unknown.")
    reason: str | None = field("One-word CamelCase reason.")
    message: str | None = field("Human-readable detail.")
    observed_generation: int | None = field("metadata.generation this condition was computed for.")
    last_transition_time: str | None = field("When status last flipped.", json_schema_extra={"format": "date-time"})


class CommonStatus(ApiModel):
    observed_generation: int | None = field("The metadata.generation that was last acted on.")
    phase: str | None = field("Human summary of where the resource stands.")
    conditions: list[Condition] | None = field(
        "Ready, Reconciling, Stalled and kind-specific conditions (kstatus-compatible).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


FeatureRefs = Annotated[
    list[DnsLabel],
    Field(json_schema_extra={"x-kubernetes-list-type": "set"}),
]
