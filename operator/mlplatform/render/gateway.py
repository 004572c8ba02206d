"""ModelDeployment.spec.gateway -> an HTTPRoute (gateway.networking.k8s.io/v1) to the model's Service(s)."""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import Gateway
from .common import Owner, metadata

HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"


def canary_service_name(name: str) -> str:
    return f"{name}-canary"


def http_route(owner: Owner, gateway: Gateway, component: str, port: int, canary_weight: int | None,
               mirror_percent: int = 0) -> dict[str, Any]:
    """canary_weight None: one backend, the Service. A number (0-100): the stable Service gets 100-weight and
    the canary's Service the weight, exactly as status.rollout.canaryWeight says. mirror_percent > 0: that share
    of the requests is also sent to the canary's Service (RequestMirror), whose responses are discarded."""
    parent_refs = []
    for ref in gateway.parent_refs:
        parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref.name}
        if ref.namespace:
            parent["namespace"] = ref.namespace
        if ref.section_name:
            parent["sectionName"] = ref.section_name
        parent_refs.append(parent)

    def backend(name: str, weight: int) -> dict[str, Any]:
        return {"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}

    if canary_weight is None:
        backends = [backend(owner.name, 1)]
    else:
        backends = [backend(owner.name, 100 - canary_weight), backend(canary_service_name(owner.name), canary_weight)]
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
