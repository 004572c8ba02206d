"""FeatureStore: the store's Feast config ConfigMap, a connectivity check per configuration, Ready from it."""

from __future__ import annotations

from ..render.featurestore import (
    CHECK_COMPONENT,
    check_job_name,
    render_feature_store,
    store_config_hash,
)
from ..runtime.cache import ResourceKey
from ..status.featurestore import FeatureStoreObserved, feature_store_report
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

KIND = "FeatureStore"


def reconcile(ctx: Context, key: ResourceKey, body: dict) -> None:
    owner = owner_of(KIND, body)
    spec = typed_spec(body)
    previous = body.get("status") or {}
    config_hash = store_config_hash(spec, ctx.config)
    include_job = previous.get("configHash") != config_hash or \
        ctx.cache.child(key, "Job", check_job_name(owner.name, config_hash)) is not None
    rendered = render_feature_store(owner, spec, ctx.config, include_check_job=include_job)
    apply_children(ctx, key, owner, rendered.objects, keep=lambda child: child["kind"] == "Job" and job_finished(child))
    job_pods = pods_of(ctx, key, CHECK_COMPONENT)
    observed = FeatureStoreObserved(
        config_hash=config_hash,
        stores=f"offlineStore {spec.offline_store.type}, onlineStore {spec.online_store.type}, "
               f"registry {spec.registry.type}",
        check_jobs=ctx.cache.children(key, "Job"),
        job_pods=job_pods,
        events_by_pod=warning_events_if_needed(ctx, owner.namespace, job_pods),
    )
    report = feature_store_report(previous, observed)
    write_status(ctx, KIND, body, report.status, report.phase, report.conditions)


def dependents(ctx: Context, namespace: str, name: str) -> list[ResourceKey]:
    """FeatureViews of the namespace that use this store (by name, or `default` when they name none)."""
    keys = []
    for view in ctx.cache.resources("FeatureView", namespace):
        store = ((view.get("spec") or {}).get("store")) or "default"
        if store == name:
            keys.append(("FeatureView", namespace, view["metadata"]["name"]))
    return keys
