"""The canary rollout of a ModelDeployment as a pure function: what was observed -> what to run, with which
weight, and what status.rollout says. No clock, no API: `now` and every observation are passed in.

Vocabulary: the *stable* Deployment (<name>) serves the template that was last promoted; the *canary*
Deployment (<name>-canary) runs the newly rendered (*desired*) template while the canary lasts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

PROGRESSING, PAUSED, PROMOTED, ABORTED = "Progressing", "Paused", "Promoted", "Aborted"
RUNNING = (PROGRESSING, PAUSED)
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
    stable_hash: str | None         # template hash on the live stable Deployment; None: there is none yet
    stable_model_uri: str | None
    previous: dict | None           # status.rollout as last written
    canary_ready: bool = False      # the canary Deployment exists, runs the desired template, all ready
    canary_failure: str | None = None  # why the canary missed its progress deadline
    now: datetime = datetime.fromtimestamp(0, timezone.utc)


@dataclass(frozen=True)
class RolloutDecision:
    stable_takes_desired: bool      # False: the stable Deployment keeps its live template
    canary: bool                    # render <name>-canary with the desired template
    weight: int                     # percent of traffic to the canary
    status: dict | None             # status.rollout
    requeue_after: float | None = None
    aborted: str | None = None      # news: the canary was aborted just now, and why


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> datetime | None:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) if value else None


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
             requeue_after: float | None = None) -> RolloutDecision:
    policy = inputs.policy
    weight = policy.steps[step - 1]
    phase = PAUSED if policy.pause else PROGRESSING
    status = _status(inputs, phase, step, weight, message,
                     stepStartTime=_iso(step_start) if step_start else None)
    return RolloutDecision(False, True, weight, status, requeue_after)


def plan_rollout(inputs: RolloutInputs) -> RolloutDecision:
    policy, previous = inputs.policy, inputs.previous or {}
    if inputs.stable_hash is None:
        # The first deployment of a resource (or a Deployment from before canaries): never a canary.
        return _direct(inputs, inputs.previous)
    running = previous.get("phase") in RUNNING
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
    if same_canary and previous.get("phase") == ABORTED:
        # Aborted stays aborted until the spec changes again.
        return RolloutDecision(False, False, 0, inputs.previous)
    steps = len(policy.steps)
    if not (same_canary and running):
        verb = ("the spec changed during the canary: restarted from step 1" if running
                else "canary started")
        status = _at_step(inputs, 1, f"{verb}: step 1/{steps} at {policy.steps[0]}%, waiting for the canary to be Ready",
                          None)
        return RolloutDecision(False, True, policy.steps[0], {**status.status, "startTime": _iso(inputs.now)})
    step = min(max(int(previous.get("step") or 1), 1), steps)
    if inputs.canary_failure:
        message = f"canary aborted at step {step}/{steps}: {inputs.canary_failure}"
        status = _status(inputs, ABORTED, step, 0, message, reason="ProgressDeadlineExceeded")
        return RolloutDecision(False, False, 0, status, aborted=message)
    weight = policy.steps[step - 1]
    if policy.pause:
        return _at_step(inputs, step, f"paused at step {step}/{steps} ({weight}%): rollout.canary.pause is true", None)
    if not inputs.canary_ready:
        return _at_step(inputs, step, f"step {step}/{steps} at {weight}%: waiting for the canary to be Ready", None)
    started = _parse(previous.get("stepStartTime")) or inputs.now
    elapsed = (inputs.now - started).total_seconds()
    if elapsed < policy.step_seconds:
        remaining = policy.step_seconds - elapsed
        return _at_step(inputs, step, f"step {step}/{steps} at {weight}%: canary Ready, holding {policy.step_seconds}s",
                        started, requeue_after=remaining)
    if step < steps:
        nxt = policy.steps[step]
        return _at_step(inputs, step + 1, f"step {step + 1}/{steps} at {nxt}%: canary Ready, holding {policy.step_seconds}s",
                        inputs.now, requeue_after=policy.step_seconds)
    status = _status(inputs, PROMOTED, steps + 1, 100,
                     f"promoted after {steps} step(s): the stable Deployment runs the new template",
                     stableModelUri=inputs.desired_model_uri, stableHash=inputs.desired_hash)
    return RolloutDecision(True, False, 0, status)


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
