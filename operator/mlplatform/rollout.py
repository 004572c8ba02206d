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


DEFAULT_MIRROR_SECONDS = 300
DEFAULT_ANALYSIS_INTERVAL_SECONDS = 30
DEFAULT_FAILURE_LIMIT = 1
ANALYSIS_FAILED = "AnalysisFailed"
# Kept in status.rollout from one reconcile of a canary to the next (dropped when another canary starts).
CARRIED = ("mirrorStartTime", "mirrorEndTime", "analysis")


@dataclass(frozen=True)
class AnalysisPolicy:
    max_error_rate: float | None = None
    max_latency_ms: float | None = None
    interval_seconds: int = DEFAULT_ANALYSIS_INTERVAL_SECONDS
    failure_limit: int = DEFAULT_FAILURE_LIMIT


@dataclass(frozen=True)
class Reading:
    """One metric of a check: what it is, its bound, the value read (None: no data), and why there is none."""
    metric: str          # e.g. "error rate"
    bound_name: str      # e.g. "maxErrorRate"
    bound: float
    value: float | None
    problem: str | None = None  # the query failed, or returned nothing


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    message: str


@dataclass(frozen=True)
class CanaryPolicy:
    steps: tuple[int, ...]
    step_seconds: int = DEFAULT_STEP_SECONDS
    pause: bool = False
    mirror_percent: int = 0
    mirror_seconds: int = DEFAULT_MIRROR_SECONDS
    analysis: AnalysisPolicy | None = None


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
    readings: tuple[Reading, ...] | None = None  # an analysis check made now (analysis_due said so), else None


@dataclass(frozen=True)
class RolloutDecision:
    stable_takes_desired: bool      # False: the stable Deployment keeps its (stable) template
    canary: bool                    # render <name>-canary with the desired template
    weight: int                     # percent of traffic routed to the canary now (only to Ready capacity)
    status: dict | None             # status.rollout
    requeue_after: float | None = None
    aborted: str | None = None      # news: the canary was aborted just now, and why
    capacity_weight: int = 0        # the share the canary Deployment is sized for (the current step's)
    mirror_percent: int = 0         # percent of requests mirrored to the canary now (RequestMirror)


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
    carried = {k: previous[k] for k in CARRIED if k in previous} if previous.get("canaryHash") == inputs.desired_hash else {}
    out = {
        **carried,
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


def judge(readings: tuple[Reading, ...]) -> CheckResult:
    """A check passes when every metric has a value within its bound. No data is not a pass: a canary that
    received no requests, or whose series are missing, has shown nothing."""
    parts, passed = [], True
    for r in readings:
        if r.value is None:
            passed = False
            parts.append(f"{r.metric}: no data ({r.problem or 'the query returned nothing'}), counted as failed")
        elif r.value > r.bound:
            passed = False
            parts.append(f"{r.metric} {r.value:.4g} > {r.bound_name} {r.bound:g}")
        else:
            parts.append(f"{r.metric} {r.value:.4g} <= {r.bound_name} {r.bound:g}")
    return CheckResult(passed, "; ".join(parts))


def _last_checked(previous: dict) -> datetime | None:
    return _parse((previous.get("analysis") or {}).get("lastCheckTime"))


def analysis_due(policy: CanaryPolicy | None, previous: dict | None, desired_hash: str, now: datetime) -> bool:
    """Whether the controller should query Prometheus now: the canary of this template holds a routed step,
    and intervalSeconds have passed since the step began or the last check (each check reads the window since)."""
    return seconds_to_next_check(policy, previous, desired_hash, now) == 0


def seconds_to_next_check(policy: CanaryPolicy | None, previous: dict | None, desired_hash: str,
                          now: datetime) -> float | None:
    previous = previous or {}
    # A paused canary is not judged (its readings would not be recorded): checks resume with the step.
    if policy is None or policy.analysis is None or policy.pause or previous.get("phase") != PROGRESSING \
            or previous.get("canaryHash") != desired_hash or not previous.get("canaryWeight"):
        return None
    step_start = _parse(previous.get("stepStartTime"))
    if step_start is None:
        return None
    last = max(filter(None, (step_start, _last_checked(previous))))
    return max(policy.analysis.interval_seconds - (now - last).total_seconds(), 0.0)


def _record_check(previous: dict, readings: tuple[Reading, ...], now: datetime) -> tuple[dict, CheckResult]:
    result = judge(readings)
    before = previous.get("analysis") or {}
    analysis = {"checks": int(before.get("checks") or 0) + 1,
                "failedChecks": int(before.get("failedChecks") or 0) + (0 if result.passed else 1),
                "lastCheckTime": _iso(now), "lastPassed": result.passed, "lastResult": result.message}
    return analysis, result


def _passed_during_step(analysis: dict, step_start: datetime) -> bool:
    checked = _parse(analysis.get("lastCheckTime"))
    return bool(analysis.get("lastPassed")) and checked is not None and checked >= step_start


def _mirroring(inputs: RolloutInputs, steps: int) -> RolloutDecision | None:
    """Before step 1: mirrorPercent of the requests are copied to the canary for mirrorSeconds (from the first
    reconcile that saw a Ready canary pod), none routed to it. None once the mirroring is over."""
    policy, previous = inputs.policy, inputs.previous or {}
    if not policy.mirror_percent or previous.get("mirrorEndTime"):
        return None
    capacity = max(policy.steps[0], policy.mirror_percent)
    if inputs.canary_ready_replicas < 1:
        status = _status(inputs, PROGRESSING, 1, 0, f"waiting for a Ready canary replica before mirroring "
                         f"{policy.mirror_percent}% of the requests to it ({inputs.canary_ready_replicas} Ready)")
        return RolloutDecision(False, True, 0, status, capacity_weight=capacity, mirror_percent=policy.mirror_percent)
    started = _parse(previous.get("mirrorStartTime")) or inputs.now
    elapsed = (inputs.now - started).total_seconds()
    if elapsed < policy.mirror_seconds:
        status = _status(inputs, PROGRESSING, 1, 0,
                         f"mirroring {policy.mirror_percent}% of the requests to the canary for "
                         f"{policy.mirror_seconds}s before step 1/{steps} (responses discarded)",
                         mirrorStartTime=_iso(started))
        return RolloutDecision(False, True, 0, status, policy.mirror_seconds - elapsed, capacity_weight=capacity,
                               mirror_percent=policy.mirror_percent)
    return None


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
    if step == 1:
        mirroring = _mirroring(inputs, steps)
        if mirroring is not None:
            return mirroring
        if policy.mirror_percent and not previous.get("mirrorEndTime"):
            previous = {**previous, "mirrorEndTime": _iso(inputs.now)}
            inputs = replace(inputs, previous=previous)
    if routed_weight(inputs, step) < weight:
        return _at_step(inputs, step, _waiting(inputs, step, ""), None)
    # The step's weight is routed: it holds stepSeconds from the first reconcile that saw it routed.
    started = _parse(previous.get("stepStartTime")) if previous.get("canaryWeight") == weight else None
    started = started or inputs.now
    analysis = previous.get("analysis") or {}
    if policy.analysis is not None and inputs.readings is not None:
        analysis, result = _record_check(previous, inputs.readings, inputs.now)
        if analysis["failedChecks"] >= policy.analysis.failure_limit:
            message = (f"canary aborted at step {step}/{steps}: analysis failed {analysis['failedChecks']} of "
                       f"{analysis['checks']} check(s) (failureLimit {policy.analysis.failure_limit}): {result.message}")
            status = _status(inputs, ABORTED, step, 0, message, reason=ANALYSIS_FAILED, analysis=analysis)
            return RolloutDecision(False, False, 0, status, aborted=message)
        inputs = replace(inputs, previous={**previous, "analysis": analysis})
    elapsed = (inputs.now - started).total_seconds()
    next_check = seconds_to_next_check(policy, {**inputs.previous, "stepStartTime": _iso(started),
                                                "canaryWeight": weight, "phase": PROGRESSING},
                                       inputs.desired_hash, inputs.now)
    if elapsed < policy.step_seconds:
        remaining = policy.step_seconds - elapsed
        if next_check is not None:
            remaining = min(remaining, next_check or policy.analysis.interval_seconds)
        return _at_step(inputs, step, f"step {step}/{steps} at {weight}%: canary Ready, holding {policy.step_seconds}s"
                        + _analysis_note(analysis), started, requeue_after=remaining)
    if policy.analysis is not None and not _passed_during_step(analysis, started):
        return _at_step(inputs, step, f"step {step}/{steps} at {weight}%: waiting for a passing analysis check at "
                        f"this step" + _analysis_note(analysis), started,
                        requeue_after=next_check or policy.analysis.interval_seconds)
    if step < steps:
        nxt = step + 1
        if routed_weight(inputs, nxt) >= policy.steps[nxt - 1]:  # already enough Ready capacity for the next one
            return _at_step(inputs, nxt, f"step {nxt}/{steps} at {policy.steps[nxt - 1]}%: canary Ready, holding "
                            f"{policy.step_seconds}s", inputs.now, requeue_after=policy.step_seconds)
        return _at_step(inputs, nxt, _waiting(inputs, nxt, ""), None)
    return _promoting(inputs)


def _analysis_note(analysis: dict) -> str:
    if not analysis.get("lastResult"):
        return ""
    return (f" (analysis: {analysis.get('failedChecks', 0)}/{analysis.get('checks', 0)} check(s) failed; last: "
            f"{analysis['lastResult']})")


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
