"""ModelDeployment status from what is observed: the Deployment, its HPA and pods, and dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from .conditions import Cond, kstatus
from .dependencies import ModelResolution
from .pods import PodProblem, first_problem, pod_ready

GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


@dataclass(frozen=True)
class GroupReadiness:
    ready: int                  # groups whose every pod exists and is Ready
    missing: str | None = None  # the first group that is not, and why (for the Ready message)


def group_readiness(pods: list[dict], size: int, replicas: int) -> GroupReadiness:
    """Multi-node replicas (LeaderWorkerSet groups of `size` pods) counted from their pods, whatever the
    LeaderWorkerSet's status says (v0.8 counts a group before its workers are Ready): a group is Ready when
    all its pods are there, not terminating, and Ready."""
    by_group: dict[int, list[dict]] = {}
    for pod in pods:
        index = (pod["metadata"].get("labels") or {}).get(GROUP_INDEX_LABEL)
        if index is not None and index.isdigit() and not pod["metadata"].get("deletionTimestamp"):
            by_group.setdefault(int(index), []).append(pod)
    ready, missing = 0, None
    for group in range(replicas):
        members = by_group.get(group, [])
        not_ready = sorted((p for p in members if not pod_ready(p)), key=lambda p: p["metadata"]["name"])
        if len(members) >= size and not not_ready:
            ready += 1
            continue
        if missing is None:
            if not_ready:
                pod = not_ready[0]
                role = "leader" if (pod["metadata"].get("labels") or {}).get(WORKER_INDEX_LABEL) == "0" else "worker"
                phase = (pod.get("status") or {}).get("phase") or "Pending"
                missing = f"group {group} not Ready: {role} pod {pod['metadata']['name']} is {phase}, not Ready"
            else:
                missing = f"group {group} not Ready: {len(members)} of its {size} pods exist"
    return GroupReadiness(ready, missing)


@dataclass
class ModelDeploymentObserved:
    suspended: bool
    fixed_replicas: int | None  # spec.replicas (default 1) when not autoscaled
    resolution: ModelResolution
    features: Cond
    deployment: dict | None
    hpa: dict | None
    pods: list[dict] = field(default_factory=list)
    events_by_pod: dict[str, list[dict]] = field(default_factory=dict)
    claim_problem: PodProblem | None = None
    render_error: str | None = None
    cache: Cond | None = None  # ModelCached, with model.cache
    promoting: bool = False  # a canary's promotion: the stable Deployment rolls while the canary serves
    canary_ready: int = 0  # Ready pods of the canary Deployment (counted while promoting)
    groups: GroupReadiness | None = None  # multi-node: whole groups Ready, counted from their pods
    render_reason: str = "InvalidSpec"  # the Stalled reason of render_error (e.g. KEDANotInstalled)
    scales_to_zero: bool = False  # autoscaling.engine keda with minReplicas 0: KEDA may set the replicas to 0


@dataclass
class ModelDeploymentReport:
    phase: str
    conditions: list[Cond]
    replicas: int
    ready_replicas: int
    desired_replicas: int


def replica_summary(report: ModelDeploymentReport) -> str:
    """ready/desired for kubectl get; says so when the model is scaled to zero."""
    summary = f"{report.ready_replicas}/{report.desired_replicas}"
    return f"{summary} (scaled to zero)" if report.phase == SCALED_TO_ZERO else summary


SCALED_TO_ZERO = "ScaledToZero"


def scaled_to_zero(obs: ModelDeploymentObserved) -> bool:
    """KEDA scaled the workload to zero (no demand for idleSeconds) and no pod of it is left."""
    if not obs.scales_to_zero or obs.deployment is None:
        return False
    spec_replicas = (obs.deployment.get("spec") or {}).get("replicas")
    return spec_replicas == 0 and not (obs.deployment.get("status") or {}).get("replicas") and not obs.pods


def desired_replicas(obs: ModelDeploymentObserved) -> int:
    if obs.suspended or scaled_to_zero(obs):
        return 0
    if obs.fixed_replicas is not None:
        return obs.fixed_replicas
    hpa_status = (obs.hpa or {}).get("status") or {}
    hpa_spec = (obs.hpa or {}).get("spec") or {}
    return hpa_status.get("desiredReplicas") or hpa_spec.get("minReplicas") or 1


def _rollout_done(deployment: dict, desired: int) -> tuple[bool, int, int]:
    status = deployment.get("status") or {}
    replicas = status.get("replicas", 0)
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    current = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    done = current and ready >= desired and updated >= desired and replicas <= max(desired, updated)
    return done, replicas, ready


def model_deployment_report(obs: ModelDeploymentObserved) -> ModelDeploymentReport:
    desired = desired_replicas(obs)
    replicas = ready = 0
    if obs.deployment and obs.groups is not None:
        status = obs.deployment.get("status") or {}
        obs.deployment = {**obs.deployment, "status": {**status, "readyReplicas": obs.groups.ready}}
    if obs.deployment:
        _, replicas, ready = _rollout_done(obs.deployment, desired)
    extra = [obs.resolution.condition, obs.features] + ([obs.cache] if obs.cache else [])

    def report(phase: str, ready_cond: Cond, converging: bool, stalled: Cond | None = None) -> ModelDeploymentReport:
        return ModelDeploymentReport(phase, kstatus(ready_cond, converging=converging, stalled=stalled) + extra,
                                     replicas, ready, desired)

    if obs.render_error:
        reason = obs.render_reason
        return report("Stalled", Cond("Ready", False, reason, obs.render_error), False,
                      Cond("Stalled", True, reason, obs.render_error))
    if obs.resolution.uri is None and obs.resolution.stalled:
        c = obs.resolution.condition
        return report("Stalled", Cond("Ready", False, c.reason, c.message), False,
                      Cond("Stalled", True, c.reason, c.message))
    if obs.suspended:
        # Suspended is a state asked for, and reached: Ready (reason Suspended), so that kstatus (Flux) reads
        # Current and a GitOps sync of a suspended resource completes; Argo CD shows it as Suspended.
        return report("Suspended", Cond("Ready", True, "Suspended", "spec.suspend is true: scaled to zero"), False)
    if obs.resolution.uri is None:
        c = obs.resolution.condition
        return report("WaitingForTrainingJob", Cond("Ready", False, c.reason, c.message), True)
    if obs.cache is not None and not obs.cache.status and obs.deployment is None:
        waiting = Cond("Ready", False, obs.cache.reason, obs.cache.message)
        if obs.cache.reason in ("FillFailed", "CacheConflict"):
            return report("Stalled", waiting, False, Cond("Stalled", True, obs.cache.reason, obs.cache.message))
        return report("Progressing", waiting, True)
    if obs.deployment is None:
        return report("Progressing", Cond("Ready", False, "Creating", "Deployment not created yet"), True)
    if scaled_to_zero(obs):
        # Like Suspended, a state asked for and reached (kstatus Current, Argo CD Healthy): KEDA brings it back.
        return report(SCALED_TO_ZERO, Cond("Ready", True, SCALED_TO_ZERO,
                                           "no demand for autoscaling.idleSeconds: scaled to zero; requests pending "
                                           "at the gateway scale it back to one"), False)
    done, _, _ = _rollout_done(obs.deployment, desired)
    if obs.promoting and ready + obs.canary_ready >= desired:
        # A promotion is not a rollout to report: the stable Deployment rolls to the template the canary has
        # served, within maxSurge, while the canary keeps its share. Ready stays True as long as the capacity is.
        done = True
    if not done:
        problem = obs.claim_problem or first_problem(obs.pods, obs.events_by_pod)
        group = f"; {obs.groups.missing}" if obs.groups is not None and obs.groups.missing else ""
        if problem:
            return report("Degraded" if ready else "Progressing",
                          Cond("Ready", False, problem.reason, problem.message + group), True)
        return report("Progressing", Cond("Ready", False, "RollingOut", f"{ready}/{desired} replicas ready{group}"), True)
    if not obs.features.status:
        return report("WaitingForFeatures", Cond("Ready", False, obs.features.reason, obs.features.message), True)
    return report("Ready", Cond("Ready", True, "AllReplicasAvailable", f"{ready}/{desired} replicas ready"), False)
