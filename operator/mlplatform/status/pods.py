"""Why pods are not Ready, in the words of the pods and their events."""

from __future__ import annotations

from dataclasses import dataclass

from .conditions import true_condition

# Container waiting reasons that mean the pod will not become Ready on its own soon.
BAD_WAITING_REASONS = (
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
)


@dataclass(frozen=True)
class PodProblem:
    reason: str
    message: str


def pod_ready(pod: dict) -> bool:
    return true_condition(pod, "Ready") is not None


def pod_problem(pod: dict, warning_events: list[dict] | None = None) -> PodProblem | None:
    """The most telling reason this pod is not Ready, or None when it is Ready or merely starting."""
    if pod_ready(pod) or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            message = cond.get("message") or "no node fits the pod"
            reason = "ClaimNotFound" if "persistentvolumeclaim" in message and "not found" in message else \
                cond.get("reason") or "Unschedulable"
            return PodProblem(reason, f"pod {name}: {message}")
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in BAD_WAITING_REASONS:
            detail = waiting.get("message") or waiting["reason"]
            return PodProblem(waiting["reason"], f"pod {name}: container {container.get('name')}: {detail}")
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if container.get("restartCount", 0) > 0 and terminated.get("exitCode"):
            return PodProblem("ContainerRestarting", f"pod {name}: container {container.get('name')} exited with code "
                                                     f"{terminated['exitCode']} ({terminated.get('reason', 'Error')})")
    for event in sorted(warning_events or [], key=_event_time, reverse=True):
        return PodProblem(event.get("reason") or "Warning", f"pod {name}: {event.get('message', '')}".strip())
    return None


def _event_time(event: dict) -> str:
    return event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get("creationTimestamp") or ""


def first_problem(pods: list[dict], events_by_pod: dict[str, list[dict]] | None = None) -> PodProblem | None:
    events_by_pod = events_by_pod or {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        problem = pod_problem(pod, events_by_pod.get(pod["metadata"]["name"]))
        if problem:
            return problem
    return None


def failed_pod_message(pods: list[dict]) -> str | None:
    """Why a training pod failed: the terminated container's reason, exit code and message."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        status = pod.get("status") or {}
        if status.get("phase") != "Failed":
            continue
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode"):
                detail = f": {terminated['message']}" if terminated.get("message") else ""
                return (f"pod {pod['metadata']['name']}: container {container.get('name')} exited with code "
                        f"{terminated['exitCode']} ({terminated.get('reason', 'Error')}){detail}")
        if status.get("reason") or status.get("message"):
            return f"pod {pod['metadata']['name']}: {status.get('reason', '')} {status.get('message', '')}".strip()
    return None
