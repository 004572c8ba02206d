"""A ModelDeployment's canary: observe the stable and canary Deployments, ask rollout.plan_rollout what to
run, and turn its decision into the objects to apply (stable, canary, canary Service, HTTPRoute weights)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..labels import INTENT_HASH_ANNOTATION, MODEL_URI_ANNOTATION, TEMPLATE_HASH_ANNOTATION
from ..render.canary import (
    REVISION_KIND,
    canary_deployment,
    canary_service,
    deployment_from_revision,
    is_canary,
    progress_deadline_exceeded,
    ready_with_template,
    rolled_out,
    stable_deployment,
    stable_revision,
    stable_revision_name,
    template_hash,
    with_template_hash,
)
from ..render.common import Owner
from ..render.gateway import canary_service_name, http_route, model_version
from ..render.modeldeployment import COMPONENT, SERVICE_PORT
from ..render.promql import error_rate_query, latency_p99_ms_query
from ..rollout import (
    ABORTED,
    DEFAULT_ANALYSIS_INTERVAL_SECONDS,
    DEFAULT_FAILURE_LIMIT,
    DEFAULT_MIRROR_SECONDS,
    RUNNING,
    AnalysisPolicy,
    CanaryPolicy,
    Reading,
    RolloutDecision,
    RolloutInputs,
    analysis_due,
    canary_replicas,
    plan_rollout,
    without_canary,
)
from ..runtime.cache import ResourceKey
from ..runtime.prometheus import PrometheusError, client_for
from ..status.conditions import Cond
from ..status.pods import first_problem, pod_ready
from .base import Context, is_subset, live_child


@dataclass
class Arranged:
    objects: list[dict]
    decision: RolloutDecision | None


def _find(objects: list[dict], kind: str, name: str) -> dict | None:
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def _replace(objects: list[dict], old: dict, new: dict) -> list[dict]:
    return [new if o is old else o for o in objects]


def _total_replicas(spec, hpa: dict | None, live: dict | None) -> int:
    if spec.autoscaling is None:
        return spec.replicas if spec.replicas is not None else 1
    return (((hpa or {}).get("status") or {}).get("desiredReplicas")
            or ((live or {}).get("spec") or {}).get("replicas") or spec.autoscaling.min_replicas)


def arrange(ctx: Context, key: ResourceKey, owner: Owner, spec, objects: list[dict], previous: dict | None,
            canary_pods: list[dict], now: datetime | None = None) -> Arranged:
    desired = _find(objects, "Deployment", owner.name)
    canary = spec.rollout.canary if spec.rollout else None
    if desired is None:  # nothing to run yet (model unresolved): no rollout decision
        return Arranged(objects, None)
    if canary is None:  # Deployments stay exactly as rendered: no template hash, no extra reads
        return Arranged(objects, without_canary(previous))
    desired_hash = template_hash(desired)
    stamped = with_template_hash(desired, desired_hash)
    objects = _replace(objects, desired, stamped)
    if spec.suspend:
        return Arranged(objects, None)
    live = live_child(ctx, key, "apps/v1", "Deployment", owner.name)
    revision = _stable_revision(ctx, key, owner, previous)
    if live is None and revision is not None:
        # The stable Deployment was deleted mid-canary: it comes back with the stable template, never the new one.
        live = deployment_from_revision(revision)
    live_annotations = (live or {}).get("metadata", {}).get("annotations") or {}
    live_template_annotations = (((live or {}).get("spec") or {}).get("template") or {}).get("metadata", {}) \
        .get("annotations") or {}
    canary_live = ctx.cache.child(key, "Deployment", canary_service_name(owner.name))
    canary_current = canary_live is not None and \
        (canary_live["metadata"].get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION) == desired_hash
    failure = progress_deadline_exceeded(canary_live) if canary_current else None
    if failure:
        problem = first_problem(canary_pods, {})
        failure = f"{problem.reason}: {problem.message}" if problem else failure
    policy = canary_policy(canary)
    now = now or datetime.now(timezone.utc)
    readings = (measure(ctx, owner, spec, policy.analysis)
                if analysis_due(policy, previous, desired_hash, now) else None)
    exact = spec.gateway is not None
    total = _total_replicas(spec, ctx.cache.child(key, "HorizontalPodAutoscaler", owner.name), live)
    decision = plan_rollout(RolloutInputs(
        policy=policy, desired_hash=desired_hash,
        desired_model_uri=(desired["spec"]["template"]["metadata"].get("annotations") or {}).get(MODEL_URI_ANNOTATION),
        stable_hash=live_annotations.get(TEMPLATE_HASH_ANNOTATION) if live else None,
        stable_model_uri=live_template_annotations.get(MODEL_URI_ANNOTATION),
        previous=previous, canary_ready_replicas=max(ready_with_template(canary_live, desired_hash),
                                                     ready_canary_pods(canary_pods, desired_hash)),
        canary_failure=failure, total_replicas=total, exact_weights=exact,
        stable_rolled=rolled_out(live, desired_hash, total), now=now, readings=readings))

    if not decision.stable_takes_desired:
        stable = stable_deployment(stamped, live, live_annotations[TEMPLATE_HASH_ANNOTATION])
        if live_annotations.get(INTENT_HASH_ANNOTATION) and is_subset(stable, live):
            # Nothing of the stable Deployment changes: keep its intent hash, so that it is not applied again (a
            # Deployment's generation moves with its annotations, and Ready would flicker until it is observed).
            stable["metadata"]["annotations"][INTENT_HASH_ANNOTATION] = live_annotations[INTENT_HASH_ANNOTATION]
        objects = _replace(objects, stamped, stable)
    stable_hash = live_annotations.get(TEMPLATE_HASH_ANNOTATION) if live else None
    running = (decision.status or {}).get("phase") in RUNNING
    if running and decision.canary:
        kept_hash = (decision.status or {}).get("stableHash") or stable_hash
        if revision is not None and (revision.get("data") or {}).get("templateHash") == kept_hash:
            objects.append(_as_intent(revision))
        elif live is not None and kept_hash == stable_hash:
            objects.append(stable_revision(desired["metadata"], owner.name, live["spec"]["template"], stable_hash))
    if decision.canary:
        # Sized for the current step's share (the last one's while promoting), routed only what is Ready.
        size = canary_replicas(total, decision.capacity_weight, exact)
        deployment = canary_deployment(stamped, desired_hash, size, exact,
                                       ctx.config.defaults.canary_progress_deadline_seconds)
        objects.append(deployment)
        service = _find(objects, "Service", owner.name)
        if exact and service is not None:
            objects.append(canary_service(service, deployment))
    route = _find(objects, "HTTPRoute", owner.name)
    if route is not None and decision.canary:
        versions = (model_version(spec.model, (decision.status or {}).get("stableModelUri")),
                    model_version(spec.model, (decision.status or {}).get("canaryModelUri")))
        objects = _replace(objects, route, http_route(owner, spec.gateway, COMPONENT, SERVICE_PORT, decision.weight,
                                                      decision.mirror_percent, versions))
    return Arranged(objects, decision)


def canary_policy(canary) -> CanaryPolicy:
    analysis = canary.analysis
    return CanaryPolicy(
        tuple(canary.steps), canary.step_seconds if canary.step_seconds is not None else 300, bool(canary.pause),
        mirror_percent=canary.mirror_percent or 0,
        mirror_seconds=canary.mirror_seconds if canary.mirror_seconds is not None else DEFAULT_MIRROR_SECONDS,
        analysis=None if analysis is None else AnalysisPolicy(
            analysis.max_error_rate, analysis.max_latency_ms,
            analysis.interval_seconds or DEFAULT_ANALYSIS_INTERVAL_SECONDS,
            analysis.failure_limit or DEFAULT_FAILURE_LIMIT))


def measure(ctx: Context, owner: Owner, spec, analysis: AnalysisPolicy) -> tuple[Reading, ...]:
    """One analysis check: the canary's error rate and p99 latency over the last interval, from Prometheus.
    A query that fails or returns nothing is a reading without a value (rollout.judge counts it as failed)."""
    prom = ctx.config.prometheus
    client = client_for(prom.url, prom.query_timeout_seconds)
    window = analysis.interval_seconds
    wanted = []
    if analysis.max_error_rate is not None:
        wanted.append(("error rate", "maxErrorRate", analysis.max_error_rate,
                       error_rate_query(ctx.config, spec.runtime.preset, owner.namespace, owner.name, window)))
    if analysis.max_latency_ms is not None:
        wanted.append(("p99 latency (ms)", "maxLatencyMs", analysis.max_latency_ms,
                       latency_p99_ms_query(ctx.config, spec.runtime.preset, owner.namespace, owner.name, window)))
    readings = []
    for metric, bound_name, bound, query in wanted:
        try:
            value, problem = client.query(query), None
        except PrometheusError as err:
            value, problem = None, f"query failed: {err}"
        readings.append(Reading(metric, bound_name, bound, value,
                                problem or (None if value is not None else f"no sample for {query}")))
    return tuple(readings)


def ready_canary_pods(pods: list[dict], desired_hash: str) -> int:
    """Ready canary pods of the desired template, from the pods themselves (a Deployment's status lags a
    scale-up by a generation; its pods do not)."""
    return sum(1 for p in pods if is_canary(p) and not p["metadata"].get("deletionTimestamp") and pod_ready(p)
               and ((p["metadata"].get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION) == desired_hash))


def _stable_revision(ctx: Context, key: ResourceKey, owner: Owner, previous: dict | None) -> dict | None:
    stable_hash = (previous or {}).get("stableHash")
    if not stable_hash or (previous or {}).get("phase") not in RUNNING:
        return None
    return ctx.cache.child(key, REVISION_KIND, stable_revision_name(owner.name, stable_hash))


def _as_intent(revision: dict) -> dict:
    """A kept ControllerRevision applied again as it is (its data is immutable)."""
    meta = revision["metadata"]
    return {"apiVersion": "apps/v1", "kind": REVISION_KIND,
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations", "ownerReferences")
                         if k in meta},
            "data": revision.get("data"), "revision": revision.get("revision", 1)}


def rollout_condition(status: dict | None) -> Cond | None:
    """RolloutAborted, once a canary has run: True (with the reason) when the last one was aborted."""
    if not status:
        return None
    if status.get("phase") == ABORTED:
        return Cond("RolloutAborted", True, status.get("reason") or "ProgressDeadlineExceeded",
                    status.get("message") or "")
    return Cond("RolloutAborted", False, status.get("phase") or "Progressing", status.get("message") or "")


def stable_pods(pods: list[dict]) -> list[dict]:
    return [p for p in pods if not is_canary(p)]


def canary_pods_of(pods: list[dict]) -> list[dict]:
    return [p for p in pods if is_canary(p)]
