"""FeatureView: the Feast repo, materialization on change and on schedule, the feature server, freshness."""

from __future__ import annotations

from datetime import datetime, timezone

from ..api.common import parse_duration_seconds
from ..api.featurestore import FeatureStoreSpec
from ..render.featureview import (
    MATERIALIZE_COMPONENT,
    SERVER_COMPONENT,
    backfill_hash,
    backfill_job_name,
    feature_server_url,
    is_online,
    materialization_job_name,
    materialization_spec_hash,
    render_feature_view,
    schema_hash,
    server_name,
    server_replicas,
    source_store_problem,
)
from ..runtime.cache import ResourceKey
from ..status.conditions import Cond, parse_time, true_condition
from ..status.featureview import FeatureViewObserved, feature_view_report
from .base import (
    Context,
    apply_children,
    job_finished,
    owner_of,
    pods_of,
    typed_spec,
    warning_events_if_needed,
    write_status,
)

KIND = "FeatureView"
DEFAULT_STORE = "default"


def resolve_store(ctx: Context, namespace: str, spec) -> tuple[str | None, dict | None, Cond | None]:
    """(store name, its FeatureStore, problem): spec.store must exist and be Ready; absent, the namespace's
    `default` is used when it exists, else the operator's stores (name None)."""
    name = spec.store or DEFAULT_STORE
    body = ctx.cache.resource(("FeatureStore", namespace, name))
    if body is None:
        if spec.store is None:
            return None, None, None
        return name, None, Cond("Ready", False, "FeatureStoreNotFound",
                                f"spec.store: FeatureStore {name} does not exist in namespace {namespace}")
    if not true_condition(body, "Ready"):
        ready = next((c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
        detail = f": {ready.get('message')}" if ready.get("message") else ""
        return name, body, Cond("Ready", False, "FeatureStoreNotReady", f"FeatureStore {name} is not Ready{detail}")
    return name, body, None


def reconcile(ctx: Context, key: ResourceKey, body: dict) -> None:
    owner = owner_of(KIND, body)
    spec = typed_spec(body)
    previous = body.get("status") or {}
    store_name, store_body, store_problem = resolve_store(ctx, owner.namespace, spec)
    store = FeatureStoreSpec.model_validate(store_body["spec"]) if store_body is not None else None
    if store_problem is None and (mismatch := source_store_problem(spec, store, store_name)):
        store_problem = Cond("Ready", False, "SourceNotInStore", mismatch)
    spec_hash = materialization_spec_hash(spec, ctx.config, store)
    on_change_job = materialization_job_name(owner.name, spec_hash)
    include_job = previous.get("materializationSpecHash") != spec_hash or \
        ctx.cache.child(key, "Job", on_change_job) is not None
    window = backfill_hash(spec)
    backfill = None
    if window is not None:
        b = spec.materialization.backfill
        backfill = (b.start, b.end, backfill_job_name(owner.name, window))
    before = previous.get("backfill") or {}
    include_backfill = backfill is not None and (
        before.get("job") != backfill[2] or before.get("phase") not in ("Succeeded", "Failed")
        or ctx.cache.child(key, "Job", backfill[2]) is not None)
    if store_problem is None:
        rendered = render_feature_view(owner, spec, ctx.config, include_materialization_job=include_job, store=store,
                                       include_backfill_job=include_backfill)
        apply_children(ctx, key, owner, rendered.objects,
                       keep=lambda child: child["kind"] == "Job" and job_finished(child))

    server_pods = pods_of(ctx, key, SERVER_COMPONENT)
    job_pods = pods_of(ctx, key, MATERIALIZE_COMPONENT)
    observed = FeatureViewObserved(
        online=is_online(spec),
        suspended=bool(spec.suspend),
        spec_hash=spec_hash,
        max_staleness_seconds=parse_duration_seconds(spec.freshness.max_staleness) if spec.freshness else None,
        materialization_jobs=ctx.cache.children(key, "Job"),
        server=ctx.cache.child(key, "Deployment", server_name(owner.name)),
        server_desired=server_replicas(spec),
        server_url=feature_server_url(owner.name, owner.namespace, ctx.config),
        pods=server_pods,
        job_pods=job_pods,
        events_by_pod=warning_events_if_needed(ctx, owner.namespace, server_pods + job_pods),
        schema_hash=schema_hash(spec),
        backfill=backfill,
        store_problem=store_problem,
    )
    now = datetime.now(timezone.utc)
    report = feature_view_report(previous, observed, now)
    if report.wake_at is not None:
        ctx.queue.add(key, delay=(report.wake_at - now).total_seconds())
    ctx.metrics.set_feature_view(owner.namespace, owner.name, online=observed.online,
                                 last_materialized=parse_time(report.status["lastMaterializedAt"]),
                                 max_staleness_seconds=observed.max_staleness_seconds)
    write_status(ctx, KIND, body, report.status, report.phase, report.conditions)
