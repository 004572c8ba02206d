"""The Deployments (and Service) of a canary rollout, derived from the rendered Deployment: pure functions."""

from __future__ import annotations

import copy

from ..labels import COMPONENT_LABEL, TEMPLATE_HASH_ANNOTATION, TRACK_LABEL, VERSION_LABEL, short_hash
from .gateway import canary_service_name

CANARY_TRACK = "canary"


def template_hash(deployment: dict) -> str:
    return short_hash(deployment["spec"]["template"])


def with_template_hash(deployment: dict, value: str) -> dict:
    out = copy.deepcopy(deployment)
    out["metadata"].setdefault("annotations", {})[TEMPLATE_HASH_ANNOTATION] = value
    return out


def canary_component(component: str, exact_weights: bool) -> str:
    """With a Gateway the shared Service must not reach the canary (the route's weights are exact): its pods
    carry their own component. Without one they keep the stable component, so the Service selects both."""
    return f"{component}-canary" if exact_weights else component


def stable_deployment(desired: dict, live: dict, live_hash: str) -> dict:
    """The stable Deployment during a canary: the rendered intent (its size as rendered, none under an HPA),
    but with the live (previous) pod template."""
    out = copy.deepcopy(desired)
    template = copy.deepcopy(live["spec"]["template"])
    (template.get("metadata") or {}).pop("creationTimestamp", None)
    out["spec"]["template"] = template
    return with_template_hash(out, live_hash)


REVISION_KIND = "ControllerRevision"


def stable_revision_name(name: str, template_hash_: str) -> str:
    return f"{name}-stable-{template_hash_}"


def stable_revision(owner_metadata: dict, name: str, template: dict, template_hash_: str) -> dict:
    """The stable pod template, kept in the cluster while a canary runs (as StatefulSet and LeaderWorkerSet keep
    theirs): a lost status write or a deleted stable Deployment cannot lose which template is stable.
    Named by its hash: a ControllerRevision's data is immutable."""
    meta = copy.deepcopy(owner_metadata)
    meta["name"] = stable_revision_name(name, template_hash_)
    meta["annotations"] = {TEMPLATE_HASH_ANNOTATION: template_hash_}
    template = copy.deepcopy(template)
    (template.get("metadata") or {}).pop("creationTimestamp", None)
    return {"apiVersion": "apps/v1", "kind": REVISION_KIND, "metadata": meta,
            "data": {"template": template, "templateHash": template_hash_}, "revision": 1}


def deployment_from_revision(revision: dict) -> dict:
    """What the stable Deployment's template was, read back from its ControllerRevision."""
    data = revision.get("data") or {}
    return {"metadata": {"annotations": {TEMPLATE_HASH_ANNOTATION: data.get("templateHash")}},
            "spec": {"template": copy.deepcopy(data.get("template") or {})}}


def canary_deployment(desired: dict, desired_hash: str, replicas: int, exact_weights: bool,
                      progress_deadline_seconds: int) -> dict:
    """<name>-canary: the desired template, its own selector (a track label), a progress deadline."""
    out = copy.deepcopy(desired)
    meta = out["metadata"]
    component = canary_component(meta["labels"][COMPONENT_LABEL], exact_weights)
    meta["name"] = canary_service_name(meta["name"])
    meta["labels"] = {**meta["labels"], COMPONENT_LABEL: component, TRACK_LABEL: CANARY_TRACK}
    spec = out["spec"]
    spec["replicas"] = replicas
    spec["progressDeadlineSeconds"] = progress_deadline_seconds
    spec["selector"]["matchLabels"] = {**spec["selector"]["matchLabels"], COMPONENT_LABEL: component,
                                       TRACK_LABEL: CANARY_TRACK}
    pod_meta = spec["template"]["metadata"]
    # Its metrics carry version=canary (the analysis selects them by it); the stable pods carry stable.
    pod_meta["labels"] = {**pod_meta["labels"], COMPONENT_LABEL: component, TRACK_LABEL: CANARY_TRACK,
                          VERSION_LABEL: CANARY_TRACK}
    # Its pods say which template they run: the Ready capacity of a canary is counted from them.
    pod_meta["annotations"] = {**(pod_meta.get("annotations") or {}), TEMPLATE_HASH_ANNOTATION: desired_hash}
    return with_template_hash(out, desired_hash)


def canary_service(service: dict, canary: dict) -> dict:
    """<name>-canary Service (gateway only): the shared Service's ports, selecting the canary's pods."""
    out = copy.deepcopy(service)
    out["metadata"]["name"] = canary["metadata"]["name"]
    out["metadata"]["labels"] = dict(canary["metadata"]["labels"])
    out["spec"]["selector"] = dict(canary["spec"]["selector"]["matchLabels"])
    return out


def is_canary(obj: dict) -> bool:
    return (obj["metadata"].get("labels") or {}).get(TRACK_LABEL) == CANARY_TRACK


def _current(deployment: dict, desired_hash: str) -> bool:
    """Runs the desired template (our annotation) and the Deployment controller has seen this generation."""
    if (deployment["metadata"].get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION) != desired_hash:
        return False
    status = deployment.get("status") or {}
    return status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)


def ready_with_template(deployment: dict | None, desired_hash: str) -> int:
    """Ready pods of a Deployment that run the desired template: its ready pods less those of older templates
    (replicas - updatedReplicas), once the controller has observed the current generation."""
    if deployment is None or not _current(deployment, desired_hash):
        return 0
    status = deployment.get("status") or {}
    older = max(status.get("replicas", 0) - status.get("updatedReplicas", 0), 0)
    return max(status.get("readyReplicas", 0) - older, 0)


def rolled_out(deployment: dict | None, desired_hash: str, replicas: int) -> bool:
    """The Deployment runs the desired template on all its replicas, none of another left, all available."""
    if deployment is None or not _current(deployment, desired_hash):
        return False
    status = deployment.get("status") or {}
    return status.get("updatedReplicas", 0) >= replicas and status.get("availableReplicas", 0) >= replicas \
        and status.get("replicas", 0) <= status.get("updatedReplicas", 0)


def progress_deadline_exceeded(deployment: dict | None) -> str | None:
    """The Deployment controller's verdict: condition Progressing False, reason ProgressDeadlineExceeded, about
    the current generation (an edited canary keeps the old verdict until the controller has seen the edit)."""
    status = (deployment or {}).get("status") or {}
    if status.get("observedGeneration", 0) < ((deployment or {}).get("metadata") or {}).get("generation", 0):
        return None
    for cond in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("status") == "False" \
                and cond.get("reason") == "ProgressDeadlineExceeded":
            return cond.get("message") or "ProgressDeadlineExceeded"
    return None


