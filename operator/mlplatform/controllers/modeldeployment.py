"""ModelDeployment: one reconcile in explicit steps, each a small function from the previous step's output:

    resolve  the resource, its model (URI or promoted run), FeatureViews, whether the Gateway API is there
    plan     render the children: a pure function of what `resolve` gives and the configuration, skipped when
             a hash of all of that is as last rendered (controllers/applied.py)
    cache    model.cache: the shared claim and its fill Job; the workload withheld until the fill completes
    rollout  canary: which template the stable Deployment runs, the canary's size and the route's weights
    apply    server-side apply of what differs from the live children, prune what is no longer rendered
    report   status: phase, conditions, replica counts, status.rollout
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.modeldeployment import ModelDeploymentSpec
from ..config import OperatorConfig
from ..labels import short_hash
from ..render.autoscaling import SCALED_OBJECT_API_VERSION, uses_keda
from ..render.common import Owner, RenderError
from ..render.gateway import canary_service_name
from ..render.leaderworkerset import as_rollout_view, workload_of
from ..render.modeldeployment import COMPONENT, pvc_claim, render_model_deployment, service_url
from ..rollout import PROMOTING
from ..runtime.cache import ResourceKey
from ..status.dependencies import ModelResolution, features_condition, freshness_condition
from ..status.gateway import route_condition, with_route
from ..status.lineage import current_schemas
from ..status.modeldeployment import (
    ModelDeploymentObserved,
    group_readiness,
    model_deployment_report,
    replica_summary,
)
from ..status.pods import PodProblem
from ..status.promotion import resolve_training_model
from .base import (
    Context,
    apply_children,
    live_child,
    owner_of,
    owns_spec_field,
    pods_of,
    typed_spec,
    warning_events_if_needed,
    write_status,
)
from .canary import Arranged, arrange, canary_pods_of, rollout_condition, stable_pods
from .lineage import report_lineage
from .model_cache import CacheOutcome, reconcile_cache

KIND = "ModelDeployment"
KEDA_NOT_INSTALLED = "KEDANotInstalled"
KEDA_MISSING_MESSAGE = ("spec.autoscaling.engine is keda but KEDA (keda.sh/v1alpha1 ScaledObject) is not installed in "
                        "this cluster: install KEDA, or use engine hpa with minReplicas >= 1")
KEDA_RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Resolved:
    """What the reconcile works from: the resource and everything it depends on, read once."""
    key: ResourceKey
    body: dict
    owner: Owner
    spec: ModelDeploymentSpec
    resolution: ModelResolution
    views: dict[str, dict | None]
    gateway_installed: bool
    previous_rollout: dict | None
    keda_installed: bool = True  # autoscaling.engine keda: KEDA's ScaledObject is served


@dataclass(frozen=True)
class Planned:
    objects: list[dict]         # the children the spec renders (none when it cannot be rendered)
    error: str | None = None    # why it cannot
    reason: str = "InvalidSpec"  # the Stalled reason of the error


def reconcile(ctx: Context, key: ResourceKey, body: dict) -> None:
    resolved = resolve(ctx, key, body)
    planned = plan(ctx, resolved)
    cached = CacheOutcome(planned.objects, None) if planned.error else cache(ctx, resolved, planned)
    arranged = Arranged(cached.objects, None) if planned.error or cached.held else rollout(ctx, resolved, cached)
    if not planned.error:
        apply(ctx, resolved, cached, arranged)
    report(ctx, resolved, planned, cached, arranged)


def resolve(ctx: Context, key: ResourceKey, body: dict) -> Resolved:
    owner = owner_of(KIND, body)
    spec = typed_spec(body)
    namespace = owner.namespace
    training_job = (ctx.cache.resource(("TrainingJob", namespace, spec.model.from_training_job))
                    if spec.model.from_training_job else None)
    views = {name: ctx.cache.resource(("FeatureView", namespace, name)) for name in spec.features or []}
    resolution = resolve_training_model(spec.model.uri, spec.model.from_training_job, spec.model.promotion, training_job,
                                        current_schemas(views), (body.get("status") or {}).get("trainingJobRun"))
    gateway_installed = spec.gateway is None or ctx.kube.gateway_api_installed()
    keda_installed = not uses_keda(spec) or ctx.kube.api_served(SCALED_OBJECT_API_VERSION, "scaledobjects")
    return Resolved(key, body, owner, spec, resolution, views, gateway_installed,
                    (body.get("status") or {}).get("rollout"), keda_installed)


_config_fingerprints: dict[int, tuple[OperatorConfig, str]] = {}


def config_fingerprint(config: OperatorConfig) -> str:
    """A hash of the whole operator configuration (computed once per configuration object)."""
    kept = _config_fingerprints.get(id(config))
    if kept is None or kept[0] is not config:
        if len(_config_fingerprints) > 16:
            _config_fingerprints.clear()
        kept = _config_fingerprints[id(config)] = (config, short_hash(config.model_dump(mode="json")))
    return kept[1]


def render_key(resolved: Resolved, config: OperatorConfig) -> str:
    """A hash of every argument of the render: the owner (identity, generation, annotations), the spec as
    written, the resolved model URI and the configuration. Nothing else reaches render_model_deployment."""
    owner = resolved.owner
    return short_hash([owner.kind, owner.name, owner.namespace, owner.uid, owner.generation,
                       sorted(owner.annotations.items()), resolved.body.get("spec"), resolved.resolution.uri,
                       config_fingerprint(config)])


def plan(ctx: Context, resolved: Resolved) -> Planned:
    """The rendered children: from the last render when its inputs are unchanged, else rendered now."""
    if not resolved.keda_installed:
        # Nothing is applied: the workload keeps its current autoscaler until KEDA is there (re-checked).
        ctx.queue.add(resolved.key, delay=KEDA_RECHECK_SECONDS)
        return Planned([], KEDA_MISSING_MESSAGE, KEDA_NOT_INSTALLED)
    inputs = render_key(resolved, ctx.config)
    objects = ctx.applied.rendered(resolved.key, inputs)
    if objects is not None:
        return Planned(objects)
    try:
        rendered = render_model_deployment(resolved.owner, resolved.spec, ctx.config, resolved.resolution.uri)
    except RenderError as err:
        ctx.applied.forget(resolved.key)
        return Planned([], str(err), err.reason)
    ctx.applied.remember(resolved.key, inputs, rendered.objects)
    return Planned(rendered.objects)


def cache(ctx: Context, resolved: Resolved, planned: Planned) -> CacheOutcome:
    canary_running = ctx.cache.child(resolved.key, "Deployment", canary_service_name(resolved.owner.name)) is not None
    return reconcile_cache(ctx, resolved.key, resolved.owner, planned.objects, resolved.resolution.run,
                           canary_running)


def rollout(ctx: Context, resolved: Resolved, cached: CacheOutcome) -> Arranged:
    canary_pods = canary_pods_of(ctx.cache.children(resolved.key, "Pod"))
    arranged = arrange(ctx, resolved.key, resolved.owner, resolved.spec, cached.objects, resolved.previous_rollout,
                       canary_pods)
    if not resolved.gateway_installed:
        arranged = Arranged([o for o in arranged.objects if o["kind"] != "HTTPRoute"], arranged.decision)
    return arranged


def apply(ctx: Context, resolved: Resolved, cached: CacheOutcome, arranged: Arranged) -> None:
    spec = resolved.spec
    # A held workload (a new model URI still filling its cache) keeps every child it runs with: none is pruned.
    keep = (lambda child: True) if cached.held else (lambda child: False)
    _apply(ctx, resolved.key, resolved.owner, spec, arranged.objects,
           autoscaled=resolved.resolution.uri is not None and not cached.withheld and not cached.held
           and spec.autoscaling is not None and not spec.suspend, keep=keep)
    if arranged.decision and arranged.decision.requeue_after:
        ctx.queue.add(resolved.key, delay=arranged.decision.requeue_after + 0.2)


def report(ctx: Context, resolved: Resolved, planned: Planned, cached: CacheOutcome, arranged: Arranged) -> None:
    key, owner, spec, resolution = resolved.key, resolved.owner, resolved.spec, resolved.resolution
    namespace = owner.namespace
    rollout_status = arranged.decision.status if arranged.decision else resolved.previous_rollout
    api_version, workload_kind = workload_of(spec)
    deployment = (ctx.cache.child(key, "Deployment", owner.name) if workload_kind == "Deployment"
                  else as_rollout_view(ctx.cache.child(key, workload_kind, owner.name)))
    pods = stable_pods(pods_of(ctx, key, COMPONENT))
    groups = None
    if workload_kind != "Deployment" and deployment is not None:
        groups = group_readiness(pods, spec.nodes_per_replica or 1,
                                 (deployment.get("spec") or {}).get("replicas", desired_replicas_hint(spec)))
    claim_problem = _claim_problem(ctx, namespace, resolution.uri, deployment)
    promoting = (rollout_status or {}).get("phase") == PROMOTING
    canary = ctx.cache.child(key, "Deployment", canary_service_name(owner.name)) if promoting else None
    observed = ModelDeploymentObserved(
        suspended=bool(spec.suspend),
        fixed_replicas=None if spec.autoscaling else (spec.replicas if spec.replicas is not None else 1),
        resolution=resolution,
        features=features_condition(spec.features or [], resolved.views),
        deployment=deployment,
        hpa=ctx.cache.child(key, "HorizontalPodAutoscaler", owner.name),
        pods=pods,
        events_by_pod=warning_events_if_needed(ctx, namespace, pods) if deployment else {},
        claim_problem=claim_problem,
        render_error=planned.error,
        render_reason=planned.reason,
        scales_to_zero=uses_keda(spec) and spec.autoscaling.min_replicas == 0 and not spec.suspend,
        cache=cached.condition,
        promoting=promoting,
        canary_ready=((canary or {}).get("status") or {}).get("readyReplicas", 0),
        groups=groups,
        features_fresh=freshness_condition(spec.features or [], resolved.views),
        require_fresh=bool(spec.feature_policy and spec.feature_policy.require_fresh),
    )
    result = model_deployment_report(observed)
    route = (route_condition(ctx.cache.child(key, "HTTPRoute", owner.name), namespace, resolved.gateway_installed)
             if spec.gateway else None)
    phase, conditions = with_route(result.phase, result.conditions, route)
    aborted = rollout_condition(rollout_status)
    if aborted is not None:
        conditions.append(aborted)
    lineage = report_lineage(ctx, resolved, rollout_status)
    conditions += lineage.conditions
    ctx.metrics.set_model_deployment(namespace, owner.name, ready_replicas=result.ready_replicas,
                                     desired_replicas=result.desired_replicas)
    written = write_status(ctx, KIND, resolved.body, {
        "modelUri": resolution.uri,
        "trainingJobRun": resolution.run,
        "replicas": result.replicas,
        "readyReplicas": result.ready_replicas,
        "desiredReplicas": result.desired_replicas,
        "replicaSummary": replica_summary(result),
        "url": service_url(owner, spec, ctx.config),
        "rollout": rollout_status,
        "lineage": lineage.status,
    }, phase, conditions)
    lineage.announce(ctx, resolved.body, written)


def desired_replicas_hint(spec: ModelDeploymentSpec) -> int:
    if spec.suspend:
        return 0
    if spec.autoscaling is not None:
        return spec.autoscaling.min_replicas
    return spec.replicas if spec.replicas is not None else 1


def _apply(ctx: Context, key: ResourceKey, owner, spec, objects: list[dict], autoscaled: bool,
           keep=lambda child: False) -> None:
    if not autoscaled:
        apply_children(ctx, key, owner, objects, keep=keep)
        return
    min_replicas = spec.autoscaling.min_replicas
    api_version, workload_kind = workload_of(spec)
    existing = live_child(ctx, key, api_version, workload_kind, owner.name)
    if existing is not None and owns_spec_field(existing, "replicas"):
        # Switching from a fixed size to autoscaling: keep the current size (at least minReplicas).
        current = (existing.get("spec") or {}).get("replicas") or 0
        ctx.kube.hand_over(api_version, workload_kind, owner.namespace, owner.name,
                           {"replicas": max(current, min_replicas)})
    apply_children(ctx, key, owner, objects, keep=keep)
    if existing is None:
        # Created just now: start at minReplicas rather than the API default of 1 until the HPA's first
        # sync. Without force: if anyone (the HPA) has sized it meanwhile, their size stays.
        ctx.kube.hand_over(api_version, workload_kind, owner.namespace, owner.name, {"replicas": min_replicas},
                           force=False)


def _claim_problem(ctx: Context, namespace: str, uri: str | None, deployment: dict | None) -> PodProblem | None:
    """A pvc:// model whose claim is missing or unbound, checked only while replicas are not all ready."""
    claim = pvc_claim(uri) if uri else None
    if not claim or deployment is None:
        return None
    status = deployment.get("status") or {}
    if status.get("readyReplicas", 0) >= status.get("replicas", 0) > 0:
        return None
    pvc = ctx.kube.get_pvc(namespace, claim)
    if pvc is None:
        return PodProblem("ClaimNotFound", f'persistentvolumeclaim "{claim}" of model.uri does not exist')
    phase = (pvc.get("status") or {}).get("phase")
    if phase != "Bound":
        return PodProblem("ClaimPending", f'persistentvolumeclaim "{claim}" is {phase or "Pending"}, not Bound')
    return None


def dependents(ctx: Context, kind: str, namespace: str, name: str) -> list[ResourceKey]:
    """ModelDeployments that read this FeatureView or deploy this TrainingJob's artifact."""
    keys = []
    for body in ctx.cache.resources(KIND, namespace):
        spec = body.get("spec") or {}
        if (kind == "FeatureView" and name in (spec.get("features") or [])) or \
                (kind == "TrainingJob" and (spec.get("model") or {}).get("fromTrainingJob") == name):
            keys.append((KIND, namespace, body["metadata"]["name"]))
    return keys
