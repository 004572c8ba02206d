"""Whole-run restarts of a TrainingJob: what a failed attempt (its Job Failed) or a Kueue eviction means
under spec.failurePolicy — restart the run, counted or not, or fail it — and what the run record keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..api.trainingjob import DISRUPTION_RULE, EXIT_CODE_RULE, RestartPolicy
from .conditions import true_condition

# The Job controller's message for a FailJob rule of podFailurePolicy (k8s.io/kubernetes pkg/controller/job):
#   "Container trainer for pod ns/pod failed with exit code 2 matching FailJob rule at index 1"
#   "Pod ns/pod has condition DisruptionTarget matching FailJob rule at index 0"
_RULE_INDEX = re.compile(r"matching FailJob rule at index (\d+)")
_EXIT_CODE = re.compile(r"for pod (\S+?)/(\S+) failed with exit code (\d+)")
_POD = re.compile(r"[Pp]od (\S+?)/(\S+)")


@dataclass(frozen=True)
class Decision:
    restart: bool           # start the run again (all workers); False: the run fails
    counted: bool           # counts against maxRestarts (restart) / is the restart that was one too many
    reason: str
    message: str


def worker_of(job_name: str, pod_name: str) -> str:
    """'worker 1 (pod tj-3-1-abcde)' for the Indexed Job pod <job>-<index>-<suffix>."""
    m = re.match(rf"^{re.escape(job_name)}-(\d+)-", pod_name)
    return f"worker {m.group(1)} (pod {pod_name})" if m else f"pod {pod_name}"


def job_failure_rules(job: dict) -> list[str | None]:
    """What each rule of the Job's own podFailurePolicy is (render/trainingjob.py pod_failure_policy): the Job
    keeps the rules it was created with, whatever spec.failurePolicy says since (it starts no run)."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    return [DISRUPTION_RULE if any(c.get("type") == "DisruptionTarget" for c in rule.get("onPodConditions") or [])
            else EXIT_CODE_RULE if rule.get("onExitCodes") else None
            for rule in rules]


def failed_attempt(job: dict, policy: RestartPolicy, record: dict) -> Decision | None:
    """What to do about the run's Job when it has failed (None when it has not)."""
    failed = true_condition(job, "Failed")
    if failed is None:
        return None
    name = job["metadata"]["name"]
    message = failed.get("message") or "the Job failed"
    restarts = record.get("restarts", 0)
    rule = None
    if failed.get("reason") == "PodFailurePolicy" and (m := _RULE_INDEX.search(message)):
        rules = job_failure_rules(job)
        index = int(m.group(1))
        rule = rules[index] if index < len(rules) else None
    if rule == EXIT_CODE_RULE:
        code = _EXIT_CODE.search(message)
        who = worker_of(name, code.group(2)) if code else "a worker"
        exit_code = code.group(3) if code else "a listed code"
        return Decision(False, False, "NonRetryableExitCode",
                        f"{who} exited with code {exit_code}, listed in failurePolicy.nonRetryableExitCodes: "
                        f"the run fails without restarting")
    if rule == DISRUPTION_RULE:
        pod = _POD.search(message)
        who = worker_of(name, pod.group(2)) if pod else "a worker"
        return Decision(True, False, "WorkerDisrupted",
                        f"{who} was disrupted (preemption, eviction or node loss): all workers restart; "
                        f"not counted (restartOnPreemption), {restarts}/{policy.max_restarts} restarts used")
    if failed.get("reason") == "DeadlineExceeded":
        return Decision(False, False, "DeadlineExceeded", message)
    if restarts < policy.max_restarts:
        return Decision(True, True, "WorkerFailed",
                        f"{message}: all workers restart, restart {restarts + 1}/{policy.max_restarts}")
    detail = f" after {restarts} restarts" if policy.max_restarts else ""
    return Decision(False, True, failed.get("reason") or "JobFailed", f"{message}{detail}")


def kueue_eviction(evicted: dict, policy: RestartPolicy, record: dict) -> Decision:
    """A Kueue eviction of an admitted run (the Workload's Evicted condition; Kueue suspends the Job and
    admits it again later, all workers together). Preemption and every other Kueue eviction count as a
    disruption."""
    restarts = record.get("restarts", 0)
    detail = evicted.get("message")
    what = f"evicted by Kueue ({evicted.get('reason') or 'Evicted'}{': ' + detail if detail else ''})"
    if policy.restart_on_preemption or not policy.declared:
        why = "restartOnPreemption" if policy.declared else "no failurePolicy: Kueue re-queues it"
        return Decision(True, False, "EvictedByKueue",
                        f"the run was {what}: it restarts with all workers when admitted again; not counted "
                        f"({why}), {restarts}/{policy.max_restarts} restarts used")
    if restarts < policy.max_restarts:
        return Decision(True, True, "EvictedByKueue",
                        f"the run was {what}: it restarts when admitted again, restart {restarts + 1}/{policy.max_restarts}")
    return Decision(False, True, "EvictedByKueue",
                    f"the run was {what} and has no restart left ({restarts}/{policy.max_restarts}): it fails")


def record_decision(record: dict, decision: Decision) -> dict:
    """The run record after acting on a decision (restarts / disruptions counted)."""
    out = dict(record)
    if decision.restart:
        key = "restarts" if decision.counted else "disruptions"
        out[key] = out.get(key, 0) + 1
    return out
