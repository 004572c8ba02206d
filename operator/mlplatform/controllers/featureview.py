"""FeatureView: the Feast repo, materialization on change and on schedule, the feature server, freshness."""

from __future__ import annotations

from datetime import datetime, timezone

from ..api.common import parse_duration_seconds
from ..render.featureview import (
    MATERIALIZE_COMPONENT,
    SERVER_COMPONENT,
    feature_server_url,
    is_online,
    materialization_job_name,
    materialization_spec_hash,
    render_feature_view,
    server_name,
)
from ..runtime.cache import ResourceKey
from ..status.conditions import parse_time
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


def reconcile(ctx: Context, key: ResourceKey, body: dict) -> None:
    owner = owner_of(KIND, body)
    spec = typed_spec(body)
    previous = body.get("status") or {}
    spec_hash = materialization_spec_hash(spec, ctx.config)
    on_change_job = materialization_job_name(owner.name, spec_hash)
    include_job = previous.get("materializationSpecHash") != spec_hash or \
        ctx.cache.child(key, "Job", on_change_job) is not None
    rendered = render_feature_view(owner, spec, ctx.config, include_materialization_job=include_job)
    apply_children(ctx, key, owner, rendered.objects, keep=lambda child: child["kind"] == "Job" and job_finished(child))

    server_pods = pods_of(ctx, key, SERVER_COMPONENT)
    job_pods = pods_of(ctx, key, MATERIALIZE_COMPONENT)
    observed = FeatureViewObserved(
        online=is_online(spec),
        suspended=bool(spec.suspend),
        spec_hash=spec_hash,
        max_staleness_seconds=parse_duration_seconds(spec.freshness.max_staleness) if spec.freshness else None,
        materialization_jobs=ctx.cache.children(key, "Job"),
        server=ctx.cache.child(key, "Deployment", server_name(owner.name)),
        server_desired=spec.serving.replicas if spec.serving and spec.serving.replicas is not None else 1,
        server_url=feature_server_url(owner.name, owner.namespace, ctx.config),
        pods=server_pods,
        job_pods=job_pods,
        events_by_pod=warning_events_if_needed(ctx, owner.namespace, server_pods + job_pods),
    )
    now = datetime.now(timezone.utc)
    report = feature_view_report(previous, observed, now)
    if report.wake_at is not None:
        ctx.queue.add(key, delay=(report.wake_at - now).total_seconds())
    ctx.metrics.set_feature_view(owner.namespace, owner.name, online=observed.online,
                                 last_materialized=parse_time(report.status["lastMaterializedAt"]),
                                 max_staleness_seconds=observed.max_staleness_seconds)
    # status.schemaHash and materializedUntil (read by TrainingJob triggers and ModelDeployment lineage) are not
    # computed here yet: kept as they are found, never nulled by this write.
    kept = {k: previous[k] for k in ("schemaHash", "materializedUntil") if k in previous}
    write_status(ctx, KIND, body, {**kept, **report.status}, report.phase, report.conditions)
