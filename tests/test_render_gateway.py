"""spec.gateway -> HTTPRoute, and the canary's Deployments: rendered objects checked against the Gateway API
CRD schema (v1.6.3) and the Kubernetes schemas."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from mlplatform.api.modeldeployment import Gateway
from mlplatform.labels import COMPONENT_LABEL, TEMPLATE_HASH_ANNOTATION, TRACK_LABEL
from mlplatform.render.canary import (
    canary_deployment,
    canary_service,
    progress_deadline_exceeded,
    ready_with_template,
    rolled_out,
    stable_deployment,
    template_hash,
)
from mlplatform.render.common import Owner
from mlplatform.render.gateway import http_route

from .gateway_schema import validate_httproute
from .test_render import K8S_VERSION, by_kind, md, rendered_objects

OWNER = Owner("ModelDeployment", "scorer", "team", uid="u-1", generation=3)
GATEWAY = Gateway.model_validate({"parentRefs": [{"name": "inference", "namespace": "gateway-system",
                                                  "sectionName": "https"}],
                                  "hostnames": ["fraud.ml.example.com"], "path": "/v1"})
SPEC = {"model": {"uri": "s3://m/fraud/v12/", "format": "xgboost"}, "runtime": {"preset": "xgboost"}, "replicas": 4,
        "gateway": {"parentRefs": [{"name": "inference", "namespace": "gateway-system"}],
                    "hostnames": ["fraud.ml.example.com"]},
        "rollout": {"canary": {"steps": [10, 50], "stepSeconds": 60}}}


def test_gateway_renders_an_httproute_to_the_service():
    objects = rendered_objects(md(SPEC))
    (route,) = by_kind(objects, "HTTPRoute")
    validate_httproute(route)
    assert route["metadata"]["name"] == "scorer"
    assert http_route(OWNER, GATEWAY, "predictor", 80, None)["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "inference", "namespace": "gateway-system"}]
    assert route["spec"]["hostnames"] == ["fraud.ml.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (service,) = by_kind(objects, "Service")
    assert rule["backendRefs"] == [{"group": "", "kind": "Service", "name": "scorer",
                                    "port": service["spec"]["ports"][0]["port"], "weight": 1,
                                    "filters": [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                                        "set": [{"name": "X-Model-Version", "value": SPEC["model"]["uri"]}]}}]}]


def test_no_gateway_no_route():
    spec = {k: v for k, v in SPEC.items() if k != "gateway"}
    assert by_kind(rendered_objects(md(spec)), "HTTPRoute") == []


@pytest.mark.parametrize("weight", [0, 10, 50, 99])
def test_canary_weights_are_exact_backend_weights(weight):
    route = http_route(OWNER, GATEWAY, "predictor", 80, weight)
    validate_httproute(route)
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("scorer", 100 - weight), ("scorer-canary", weight)]
    assert route["spec"]["parentRefs"][0]["sectionName"] == "https"
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/v1"


def test_a_route_with_an_unknown_field_fails_the_schema():
    route = http_route(OWNER, GATEWAY, "predictor", 80, None)
    route["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 3
    with pytest.raises(AssertionError, match="weigth"):
        validate_httproute(route)


def _deployment() -> dict:
    return next(o for o in rendered_objects(md(SPEC)) if o["kind"] == "Deployment")


@pytest.mark.parametrize("exact", [True, False])
def test_canary_deployment_runs_the_new_template_under_its_own_selector(exact):
    desired = _deployment()
    canary = canary_deployment(desired, template_hash(desired), 2, exact, 120)
    kubernetes_validate.validate(canary, K8S_VERSION, strict=True)
    assert canary["metadata"]["name"] == "scorer-canary"
    assert canary["spec"]["replicas"] == 2 and canary["spec"]["progressDeadlineSeconds"] == 120
    assert canary["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] == template_hash(desired)
    selector = canary["spec"]["selector"]["matchLabels"]
    pod_labels = canary["spec"]["template"]["metadata"]["labels"]
    assert selector[TRACK_LABEL] == "canary" and all(pod_labels[k] == v for k, v in selector.items())
    assert canary["spec"]["template"]["spec"] == desired["spec"]["template"]["spec"]
    # With a Gateway the shared Service must not select the canary (exact weights); without, it must.
    service_selector = next(o for o in rendered_objects(md(SPEC)) if o["kind"] == "Service")["spec"]["selector"]
    selected = all(pod_labels.get(k) == v for k, v in service_selector.items())
    assert selected is (not exact)
    assert (pod_labels[COMPONENT_LABEL] == "predictor-canary") is exact
    if exact:
        service = canary_service(next(o for o in rendered_objects(md(SPEC)) if o["kind"] == "Service"), canary)
        kubernetes_validate.validate(service, K8S_VERSION, strict=True)
        assert service["metadata"]["name"] == "scorer-canary" and service["spec"]["selector"] == selector


def test_stable_deployment_keeps_the_live_template_and_its_size():
    old = _deployment()
    new = copy.deepcopy(old)
    new["spec"]["template"]["metadata"]["annotations"]["mlplatform.dev/model-uri"] = "s3://m/fraud/v13/"
    live = copy.deepcopy(old)
    live["spec"]["template"]["metadata"]["creationTimestamp"] = None
    stable = stable_deployment(new, live, "h-old")
    kubernetes_validate.validate(stable, K8S_VERSION, strict=True)
    assert stable["spec"]["template"] == old["spec"]["template"]
    assert stable["spec"]["replicas"] == 4 and stable["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] == "h-old"
    del new["spec"]["replicas"]  # autoscaled: the HPA owns the size
    assert "replicas" not in stable_deployment(new, live, "h-old")["spec"]


def test_template_hash_moves_with_the_template_only():
    a = _deployment()
    b = copy.deepcopy(a)
    b["spec"]["replicas"] = 9
    assert template_hash(a) == template_hash(b)
    b["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    assert template_hash(a) != template_hash(b)


def test_canary_readiness_and_progress_deadline():
    desired = _deployment()
    canary = canary_deployment(desired, "h", 2, False, 60)
    canary["metadata"]["generation"] = 1
    assert ready_with_template(canary, "h") == 0
    canary["status"] = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
    assert ready_with_template(canary, "h") == 2 and ready_with_template(canary, "other") == 0
    # Mid-rollout of a newer template: ready pods of the older one do not count.
    canary["status"] = {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1}
    assert ready_with_template(canary, "h") == 1
    canary["status"] = {"observedGeneration": 0, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
    assert ready_with_template(canary, "h") == 0, "a generation the controller has not seen yet"
    canary["status"] = {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 2,
                        "availableReplicas": 3}
    assert not rolled_out(canary, "h", 2), "an old pod is still there"
    canary["status"]["replicas"] = 2
    assert rolled_out(canary, "h", 2) and not rolled_out(canary, "h", 3)
    assert progress_deadline_exceeded(canary) is None
    canary["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                       "message": 'ReplicaSet "scorer-canary-1" has timed out progressing.'}]
    assert "timed out" in progress_deadline_exceeded(canary)
    canary["metadata"]["generation"] = 2  # edited: the verdict was about the previous template
    assert progress_deadline_exceeded(canary) is None
