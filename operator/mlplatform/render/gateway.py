"""ModelDeployment.spec.gateway -> an HTTPRoute (gateway.networking.k8s.io/v1) to the model's Service(s)."""

from __future__ import annotations

import re
from typing import Any

from ..api.modeldeployment import Gateway, Model
from .common import Owner, metadata

HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"


def canary_service_name(name: str) -> str:
    return f"{name}-canary"


MODEL_VERSION_HEADER = "X-Model-Version"
RUN_IN_URI = re.compile(r"/run-(\d+)/?$")  # a TrainingJob run's artifact: <output.uri>/run-<n>/


def model_version(model: Model, uri: str | None) -> str | None:
    """What X-Model-Version says for a model URI: <trainingJob>/run-<n> for a TrainingJob run's artifact, else
    the URI itself (model.uri)."""
    if not uri:
        return None
    run = RUN_IN_URI.search(uri) if model.from_training_job else None
    return f"{model.from_training_job}/run-{run.group(1)}" if run else uri


def version_filter(version: str | None) -> list[dict[str, Any]]:
    """A backendRef's ResponseHeaderModifier: its responses name the model version that produced them."""
    if not version:
        return []
    return [{"type": "ResponseHeaderModifier",
             "responseHeaderModifier": {"set": [{"name": MODEL_VERSION_HEADER, "value": version}]}}]


def http_route(owner: Owner, gateway: Gateway, component: str, port: int, canary_weight: int | None,
               mirror_percent: int = 0, versions: tuple[str | None, str | None] = (None, None)) -> dict[str, Any]:
    """canary_weight None: one backend, the Service. A number (0-100): the stable Service gets 100-weight and
    the canary's Service the weight, exactly as status.rollout.canaryWeight says. mirror_percent > 0: that share
    of the requests is also sent to the canary's Service (RequestMirror), whose responses are discarded.
    versions: the model version (model_version) each backend serves, stable then canary: set as X-Model-Version
    on its responses."""
    parent_refs = []
    for ref in gateway.parent_refs:
        parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref.name}
        if ref.namespace:
            parent["namespace"] = ref.namespace
        if ref.section_name:
            parent["sectionName"] = ref.section_name
        parent_refs.append(parent)

    def backend(name: str, weight: int, version: str | None) -> dict[str, Any]:
        ref = {"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}
        return {**ref, "filters": version_filter(version)} if version else ref

    if canary_weight is None:
        backends = [backend(owner.name, 1, versions[0])]
    else:
        backends = [backend(owner.name, 100 - canary_weight, versions[0]),
                    backend(canary_service_name(owner.name), canary_weight, versions[1])]
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": gateway.path or "/"}}],
        "backendRefs": backends,
    }
    if mirror_percent > 0:
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": canary_service_name(owner.name), "port": port},
            "percent": mirror_percent}}]
    spec: dict[str, Any] = {"parentRefs": parent_refs, "rules": [rule]}
    if gateway.hostnames:
        spec["hostnames"] = list(gateway.hostnames)
    return {"apiVersion": HTTPROUTE_API_VERSION, "kind": "HTTPRoute",
            "metadata": metadata(owner, owner.name, component), "spec": spec}
