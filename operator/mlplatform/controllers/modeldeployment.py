"""ModelDeployment: resolve the model and features, render, apply, report."""

from __future__ import annotations

from ..render.common import RenderError
from ..render.leaderworkerset import as_rollout_view, workload_of
from ..render.modeldeployment import COMPONENT, pvc_claim, render_model_deployment, service_url
from ..runtime.cache import ResourceKey
from ..status.dependencies import features_condition, resolve_model
from ..status.gateway import route_condition, with_route
from ..status.modeldeployment import ModelDeploymentObserved, model_deployment_report
from ..status.pods import PodProblem
from ..status.promotion import resolve_promoted
from .applied import render_inputs
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
from .canary import arrange, canary_pods_of, rollout_condition, stable_pods
from .model_cache import reconcile_cache

KIND = "ModelDeployment"


def reconcile(ctx: Context, key: ResourceKey, body: dict) -> None:
    owner = owner_of(KIND, body)
    spec = typed_spec(body)
    namespace = owner.namespace
    training_job = (ctx.cache.resource(("TrainingJob", namespace, spec.model.from_training_job))
                    if spec.model.from_training_job else None)
    resolution = (resolve_promoted(spec.model.from_training_job, training_job, spec.model.promotion.metrics)
                  if spec.model.promotion else resolve_model(spec.model.uri, spec.model.from_training_job, training_job))
    views = {name: ctx.cache.resource(("FeatureView", namespace, name)) for name in spec.features or []}
    render_error = None
    previous_rollout = (body.get("status") or {}).get("rollout")
    rollout = None
    cache_cond = None
    gateway_installed = spec.gateway is None or ctx.kube.gateway_api_installed()
    # A canary moves with time and pods, a model cache with its fill Job: only a resource with neither (and no
    # rollout recorded) skips the render of children that are as last applied.
    skippable = not (spec.rollout and spec.rollout.canary) and previous_rollout is None and spec.model.cache is None
    inputs = render_inputs(owner, resolution.uri, str(gateway_installed)) if skippable else None
    if inputs is None or not ctx.applied.unchanged(key, inputs, ctx.cache):
        try:
            rendered = render_model_deployment(owner, spec, ctx.config, resolution.uri)
        except RenderError as err:
            render_error = str(err)
            ctx.applied.forget(key)
        else:
            objects, cache_cond, withheld = reconcile_cache(ctx, key, owner, rendered.objects)
            all_pods = ctx.cache.children(key, "Pod")
            arranged = arrange(ctx, key, owner, spec, objects, previous_rollout, canary_pods_of(all_pods))
            rollout = arranged.decision.status if arranged.decision else previous_rollout
            objects = [o for o in arranged.objects if gateway_installed or o["kind"] != "HTTPRoute"]
            live_now = _apply(ctx, key, owner, spec, objects, autoscaled=resolution.uri is not None and not withheld
                              and spec.autoscaling is not None and not spec.suspend)
            if arranged.decision and arranged.decision.requeue_after:
                ctx.queue.add(key, delay=arranged.decision.requeue_after + 0.2)
            if inputs is not None:
                ctx.applied.record(key, inputs, objects, live_now)
            else:
                ctx.applied.forget(key)

    api_version, workload_kind = workload_of(spec)
    deployment = (ctx.cache.child(key, "Deployment", owner.name) if workload_kind == "Deployment"
                  else as_rollout_view(ctx.cache.child(key, workload_kind, owner.name)))
    pods = stable_pods(pods_of(ctx, key, COMPONENT))
    claim_problem = _claim_problem(ctx, namespace, resolution.uri, deployment)
    observed = ModelDeploymentObserved(
        suspended=bool(spec.suspend),
        fixed_replicas=None if spec.autoscaling else (spec.replicas if spec.replicas is not None else 1),
        resolution=resolution,
        features=features_condition(spec.features or [], views),
        deployment=deployment,
        hpa=ctx.cache.child(key, "HorizontalPodAutoscaler", owner.name),
        pods=pods,
        events_by_pod=warning_events_if_needed(ctx, namespace, pods) if deployment else {},
        claim_problem=claim_problem,
        render_error=render_error,
        cache=cache_cond,
    )
    report = model_deployment_report(observed)
    route = (route_condition(ctx.cache.child(key, "HTTPRoute", owner.name), namespace, gateway_installed)
             if spec.gateway else None)
    phase, conditions = with_route(report.phase, report.conditions, route)
    aborted = rollout_condition(rollout)
    if aborted is not None:
        conditions.append(aborted)
    ctx.metrics.set_model_deployment(namespace, owner.name, ready_replicas=report.ready_replicas,
                                     desired_replicas=report.desired_replicas)
    write_status(ctx, KIND, body, {
        "modelUri": resolution.uri,
        "trainingJobRun": resolution.run,
        "replicas": report.replicas,
        "readyReplicas": report.ready_replicas,
        "desiredReplicas": report.desired_replicas,
        "replicaSummary": f"{report.ready_replicas}/{report.desired_replicas}",
        "url": service_url(owner, spec, ctx.config),
        "rollout": rollout,
    }, phase, conditions)


def _apply(ctx: Context, key: ResourceKey, owner, spec, objects: list[dict], autoscaled: bool) -> dict:
    if not autoscaled:
        return apply_children(ctx, key, owner, objects)
    min_replicas = spec.autoscaling.min_replicas
    api_version, workload_kind = workload_of(spec)
    existing = live_child(ctx, key, api_version, workload_kind, owner.name)
    if existing is not None and owns_spec_field(existing, "replicas"):
        # Switching from a fixed size to autoscaling: keep the current size (at least minReplicas).
        current = (existing.get("spec") or {}).get("replicas") or 0
        ctx.kube.hand_over(api_version, workload_kind, owner.namespace, owner.name,
                           {"replicas": max(current, min_replicas)})
    live_now = apply_children(ctx, key, owner, objects)
    if existing is None:
        # Created just now: start at minReplicas rather than the API default of 1 until the HPA's first
        # sync. Without force: if anyone (the HPA) has sized it meanwhile, their size stays.
        ctx.kube.hand_over(api_version, workload_kind, owner.namespace, owner.name, {"replicas": min_replicas},
                           force=False)
        live_now.pop((workload_kind, owner.name), None)  # changed since: not as the apply left it
    return live_now


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
