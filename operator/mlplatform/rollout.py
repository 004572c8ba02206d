"""The canary rollout of a ModelDeployment as a pure function: what was observed -> what to run, with which
weight, and what status.rollout says. No clock, no API: `now` and every observation are passed in.

Vocabulary: the *stable* Deployment (<name>) serves the template that was last promoted; the *canary*
Deployment (<name>-canary) runs the newly rendered (*desired*) template while the canary lasts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone

PROGRESSING, PAUSED, PROMOTING, PROMOTED, ABORTED = "Progressing", "Paused", "Promoting", "Promoted", "Aborted"
RUNNING = (PROGRESSING, PAUSED, PROMOTING)
DEFAULT_STEP_SECONDS = 300


@dataclass(frozen=True)
class CanaryPolicy:
    steps: tuple[int, ...]
    step_seconds: int = DEFAULT_STEP_SECONDS
    pause: bool = False


@dataclass(frozen=True)
class RolloutInputs:
    policy: CanaryPolicy | None     # spec.rollout.canary
    desired_hash: str               # hash of the pod template rendered from the spec now
    desired_model_uri: str | None
    stable_hash: str | None         # template hash of the stable template; None: there is none yet
    stable_model_uri: str | None
    previous: dict | None           # status.rollout as last written
    canary_ready_replicas: int = 0  # Ready canary pods running the desired template
    canary_failure: str | None = None  # why the canary missed its progress deadline
    total_replicas: int = 1         # N: the stable size (spec.replicas or the HPA's)
    exact_weights: bool = False     # a Gateway route splits traffic exactly (else the shared Service, by pods)
    stable_rolled: bool = False     # the stable Deployment runs the desired template on all N, available
    now: datetime = datetime.fromtimestamp(0, timezone.utc)


@dataclass(frozen=True)
class RolloutDecision:
    stable_takes_desired: bool      # False: the stable Deployment keeps its (stable) template
    canary: bool                    # render <name>-canary with the desired template
    weight: int                     # percent of traffic routed to the canary now (only to Ready capacity)
    status: dict | None             # status.rollout
    requeue_after: float | None = None
    aborted: str | None = None      # news: the canary was aborted just now, and why
    capacity_weight: int = 0        # the share the canary Deployment is sized for (the current step's)


def _iso(t: datetime) -> str:
    """RFC 3339 with microseconds: a step timed from a time rounded down would end early."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


def needed_replicas(inputs: RolloutInputs, weight: int) -> int:
    return canary_replicas(inputs.total_replicas, weight, inputs.exact_weights)


def routed_weight(inputs: RolloutInputs, step: int) -> int:
    """The largest weight of steps 1..step that the Ready canary pods can carry: traffic goes only to Ready
    capacity, so a step's weight is set once the canary has the Ready replicas that weight needs."""
    weights = [w for w in inputs.policy.steps[:step] if needed_replicas(inputs, w) <= inputs.canary_ready_replicas]
    return max(weights, default=0)


def _direct(inputs: RolloutInputs, status: dict | None) -> RolloutDecision:
    return RolloutDecision(True, False, 0, status)


def _ended(previous: dict, phase: str, weight: int, message: str) -> dict:
    return {k: v for k, v in {**previous, "phase": phase, "canaryWeight": weight, "message": message}.items()
            if k != "stepStartTime"}


def _status(inputs: RolloutInputs, phase: str, step: int, weight: int, message: str, **extra) -> dict:
    previous = inputs.previous or {}
    out = {
        "phase": phase, "step": step, "canaryWeight": weight,
        "stableModelUri": inputs.stable_model_uri, "canaryModelUri": inputs.desired_model_uri,
        "message": message, "stableHash": inputs.stable_hash, "canaryHash": inputs.desired_hash,
        "startTime": previous.get("startTime") if previous.get("canaryHash") == inputs.desired_hash else None,
    }
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def _at_step(inputs: RolloutInputs, step: int, message: str, step_start: datetime | None,
             requeue_after: float | None = None, **extra) -> RolloutDecision:
    policy = inputs.policy
    weight = routed_weight(inputs, step)
    phase = PAUSED if policy.pause else PROGRESSING
    status = _status(inputs, phase, step, weight, message,
                     stepStartTime=_iso(step_start) if step_start else None, **extra)
    return RolloutDecision(False, True, weight, status, requeue_after, capacity_weight=policy.steps[step - 1])


def _waiting(inputs: RolloutInputs, step: int, verb: str) -> str:
    steps, weight = len(inputs.policy.steps), inputs.policy.steps[step - 1]
    need = needed_replicas(inputs, weight)
    return (f"{verb}step {step}/{steps} at {weight}%: waiting for {need} Ready canary replica(s) "
            f"({inputs.canary_ready_replicas} Ready), {routed_weight(inputs, step)}% routed to the canary meanwhile")


def _promoting(inputs: RolloutInputs) -> RolloutDecision:
    """After the last step: the stable Deployment rolls to the new template while the canary keeps serving its
    share; once the stable one is available on the new template everywhere, traffic shifts to it and the canary
    goes."""
    previous = inputs.previous or {}
    steps = len(inputs.policy.steps) if inputs.policy else int(previous.get("step") or 1) - 1
    if inputs.stable_rolled:
        status = _status(inputs, PROMOTED, steps + 1, 100,
                         f"promoted after {steps} step(s): the stable Deployment runs the new template",
                         stableModelUri=inputs.desired_model_uri, stableHash=inputs.desired_hash)
        return RolloutDecision(True, False, 0, status)
    last = inputs.policy.steps[-1] if inputs.policy else int(previous.get("canaryWeight") or 0)
    weight = min(last, routed_weight(inputs, len(inputs.policy.steps))) if inputs.policy else last
    status = _status(inputs, PROMOTING, steps + 1, weight,
                     f"promoting after {steps} step(s): the stable Deployment rolls to the new template, the canary "
                     f"keeps its {weight}% until that is available",
                     stableModelUri=previous.get("stableModelUri") or inputs.stable_model_uri,
                     stableHash=previous.get("stableHash") or inputs.stable_hash)
    return RolloutDecision(True, True, weight, status, capacity_weight=last)


def plan_rollout(inputs: RolloutInputs) -> RolloutDecision:
    policy, previous = inputs.policy, inputs.previous or {}
    phase = previous.get("phase")
    running = phase in RUNNING
    if running and previous.get("canaryHash") == inputs.desired_hash and \
            (phase == PROMOTING or inputs.stable_hash == inputs.desired_hash):
        # A promotion under way; also one whose status write was lost (the stable template is the canary's
        # already): never taken for a spec reverted to the stable template.
        return _promoting(inputs)
    if inputs.stable_hash is None:
        # The first deployment of a resource (or a Deployment from before canaries): never a canary.
        return _direct(inputs, inputs.previous)
    if inputs.desired_hash == inputs.stable_hash:
        if running:
            return _direct(inputs, {**_ended(previous, ABORTED, 0, "the spec returned to the stable template: canary removed"),
                                    "reason": "SpecReverted"})
        return _direct(inputs, inputs.previous)
    if policy is None:
        if running:
            return _direct(inputs, _ended(previous, PROMOTED, 100,
                                          "rollout.canary removed: the new template rolled out directly"))
        return _direct(inputs, inputs.previous)
    same_canary = previous.get("canaryHash") == inputs.desired_hash
    if same_canary and phase == ABORTED:
        # Aborted stays aborted until the spec changes again.
        return RolloutDecision(False, False, 0, inputs.previous)
    steps = len(policy.steps)
    if not (same_canary and running):
        verb = ("the spec changed during the canary: restarted from step 1; " if running else "canary started: ")
        inputs = replace(inputs, canary_ready_replicas=0)  # a canary Deployment of another template serves nothing of this one
        decision = _at_step(inputs, 1, _waiting(inputs, 1, verb), None)
        return replace(decision, status={**decision.status, "startTime": _iso(inputs.now)})
    step = min(max(int(previous.get("step") or 1), 1), steps)
    if inputs.canary_failure:
        message = f"canary aborted at step {step}/{steps}: {inputs.canary_failure}"
        status = _status(inputs, ABORTED, step, 0, message, reason="ProgressDeadlineExceeded")
        return RolloutDecision(False, False, 0, status, aborted=message)
    weight = policy.steps[step - 1]
    if policy.pause:
        return _at_step(inputs, step, f"paused at step {step}/{steps} ({weight}%): rollout.canary.pause is true", None)
    if routed_weight(inputs, step) < weight:
        return _at_step(inputs, step, _waiting(inputs, step, ""), None)
    # The step's weight is routed: it holds stepSeconds from the first reconcile that saw it routed.
    started = _parse(previous.get("stepStartTime")) if previous.get("canaryWeight") == weight else None
    started = started or inputs.now
    elapsed = (inputs.now - started).total_seconds()
    if elapsed < policy.step_seconds:
        remaining = policy.step_seconds - elapsed
        return _at_step(inputs, step, f"step {step}/{steps} at {weight}%: canary Ready, holding {policy.step_seconds}s",
                        started, requeue_after=remaining)
    if step < steps:
        nxt = step + 1
        if routed_weight(inputs, nxt) >= policy.steps[nxt - 1]:  # already enough Ready capacity for the next one
            return _at_step(inputs, nxt, f"step {nxt}/{steps} at {policy.steps[nxt - 1]}%: canary Ready, holding "
                            f"{policy.step_seconds}s", inputs.now, requeue_after=policy.step_seconds)
        return _at_step(inputs, nxt, _waiting(inputs, nxt, ""), None)
    return _promoting(inputs)


def without_canary(previous: dict | None) -> RolloutDecision:
    """spec.rollout.canary absent: every change goes out directly; a canary still running is ended by it."""
    if previous and previous.get("phase") in RUNNING:
        return RolloutDecision(True, False, 0, _ended(previous, PROMOTED, 100,
                                                      "rollout.canary removed: the new template rolled out directly"))
    return RolloutDecision(True, False, 0, previous)


def canary_replicas(total: int, weight: int, exact_weights: bool) -> int:
    """Canary pods for a weight; the stable Deployment keeps its size (`total`, or the HPA's) throughout.
    With a Gateway the route splits traffic exactly: the canary gets capacity for its share, ceil(total*w/100).
    Without one the shared Service splits by pod count: round(total*w/(100-w)) canary pods make w% of all pods.
    At least one pod while the canary runs."""
    if weight <= 0:
        return 0
    share = total * weight / 100 if exact_weights else total * weight / (100 - weight)
    return max(1, math.ceil(share) if exact_weights else round(share))
