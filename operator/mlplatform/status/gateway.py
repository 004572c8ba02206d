"""What the Gateways say about our HTTPRoute: their Accepted/ResolvedRefs conditions, as one condition of ours."""

from __future__ import annotations

from .conditions import Cond

CHECKED = ("Accepted", "ResolvedRefs")


def _parent_name(ref: dict, namespace: str) -> str:
    return f"{ref.get('namespace') or namespace}/{ref.get('name')}"


def route_condition(route: dict | None, namespace: str, gateway_api_installed: bool = True) -> Cond:
    """RouteAccepted: False when a parent Gateway refuses the route (Accepted or ResolvedRefs False), with the
    Gateway's reason and message; True once every parent accepted it; Unknown while no Gateway has answered."""
    if not gateway_api_installed:
        return Cond("RouteAccepted", False, "GatewayAPINotInstalled",
                    "spec.gateway is set but the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute) is not "
                    "installed in this cluster")
    if route is None:
        return Cond("RouteAccepted", None, "WaitingForGateway", "HTTPRoute not created yet")
    parents = ((route.get("status") or {}).get("parents")) or []
    wanted = len((route.get("spec") or {}).get("parentRefs") or [])
    refused = []
    accepted = 0
    for parent in parents:
        conds = {c.get("type"): c for c in parent.get("conditions") or []}
        name = _parent_name(parent.get("parentRef") or {}, namespace)
        bad = next((conds[t] for t in CHECKED if (conds.get(t) or {}).get("status") == "False"), None)
        if bad is not None:
            refused.append((bad.get("reason") or bad["type"], f"Gateway {name}: {bad['type']} False: "
                                                               f"{bad.get('message') or bad.get('reason') or ''}".rstrip(": ")))
        elif all((conds.get(t) or {}).get("status") == "True" for t in CHECKED):
            accepted += 1
    if refused:
        return Cond("RouteAccepted", False, refused[0][0], "; ".join(m for _, m in refused))
    if wanted and accepted >= wanted:
        return Cond("RouteAccepted", True, "Accepted", f"accepted by {accepted} Gateway(s)")
    return Cond("RouteAccepted", None, "WaitingForGateway",
                f"{accepted}/{wanted} Gateway(s) accepted the HTTPRoute so far")


def with_route(phase: str, conditions: list[Cond], route: Cond | None) -> tuple[str, list[Cond]]:
    """A refused route makes the resource not Ready (the Gateway's reason and message); Unknown does not."""
    if route is None:
        return phase, conditions
    out = list(conditions) + [route]
    ready = next((c for c in out if c.type == "Ready"), None)
    if route.status is False and ready is not None and ready.status:
        out = [Cond("Ready", False, route.reason, route.message) if c is ready else c for c in out]
        phase = "Degraded"
        if route.reason == "GatewayAPINotInstalled":  # like KueueNotInstalled: no progress without a change
            out = [Cond("Stalled", True, route.reason, route.message) if c.type == "Stalled" else c for c in out]
            phase = "Stalled"
    return phase, out
