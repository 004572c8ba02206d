"""The ModelDeployment reconciler with rollout.canary against the fake Kube: which Deployments it applies,
with which template and replicas, and what status.rollout says, step by step."""

from __future__ import annotations

from mlplatform.labels import MODEL_URI_ANNOTATION, TEMPLATE_HASH_ANNOTATION

from .test_reconcilers import NS, Harness, model_deployment

CANARY = {"canary": {"steps": [10, 50], "stepSeconds": 0}}
GATEWAY = {"parentRefs": [{"name": "inference"}]}


def deployment(h: Harness, name: str) -> dict | None:
    return h.kube.stored("apps/v1", "Deployment", NS, name)


def uri(dep: dict | None) -> str | None:
    return dep["spec"]["template"]["metadata"]["annotations"][MODEL_URI_ANNOTATION] if dep else None


def ready(h: Harness, name: str) -> None:
    """The Deployment controller's word: every replica of the current generation ready."""
    dep = deployment(h, name)
    n = dep["spec"].get("replicas", 1)
    dep["metadata"]["generation"] = dep["metadata"].get("generation", 1)
    dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": n, "readyReplicas": n,
                     "updatedReplicas": n, "availableReplicas": n}
    h.add(dep)


def body(h: Harness, name: str = "scorer") -> dict:
    return h.ctx.cache.resource(("ModelDeployment", NS, name))


def rollout(h: Harness) -> dict:
    return (body(h).get("status") or {}).get("rollout") or {}


def edit(h: Harness, uri_: str, generation: int, **spec) -> None:
    md = model_deployment(**spec)
    md["spec"]["model"]["uri"] = uri_
    md["metadata"]["generation"] = generation
    h.replace(md)
    h.reconcile(body(h))


def route_weights(h: Harness) -> list[tuple[str, int]]:
    route = h.kube.stored("gateway.networking.k8s.io/v1", "HTTPRoute", NS, "scorer")
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def start(extra: dict) -> Harness:
    h = Harness()
    h.add(model_deployment(replicas=4, rollout=CANARY, **extra))
    h.reconcile(body(h))
    ready(h, "scorer")
    h.reconcile(body(h))
    return h


def test_first_deployment_is_stamped_and_never_a_canary():
    h = start({})
    assert deployment(h, "scorer-canary") is None
    assert deployment(h, "scorer")["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    assert rollout(h) == {}


def test_a_model_change_walks_the_steps_with_route_weights_and_promotes():
    h = start({"gateway": GATEWAY})
    assert route_weights(h) == [("scorer", 1)]
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, gateway=GATEWAY)
    assert (rollout(h)["step"], rollout(h)["canaryWeight"]) == (1, 10)
    assert (uri(deployment(h, "scorer")), uri(deployment(h, "scorer-canary"))) == \
        ("s3://models/churn/v3/", "s3://models/churn/v4/")
    # With a Gateway the stable side keeps all 4 replicas; the canary gets its share, at least one.
    assert (deployment(h, "scorer")["spec"]["replicas"], deployment(h, "scorer-canary")["spec"]["replicas"]) == (4, 1)
    assert route_weights(h) == [("scorer", 90), ("scorer-canary", 10)]
    assert h.kube.stored("v1", "Service", NS, "scorer-canary") is not None

    ready(h, "scorer-canary")
    h.reconcile(body(h))  # step 1 held (stepSeconds 0): step 2
    assert (rollout(h)["step"], rollout(h)["canaryWeight"]) == (2, 50)
    assert route_weights(h) == [("scorer", 50), ("scorer-canary", 50)]
    assert deployment(h, "scorer-canary")["spec"]["replicas"] == 2

    ready(h, "scorer-canary")
    h.reconcile(body(h))  # step 2 held: promoted
    assert rollout(h)["phase"] == "Promoted"
    assert uri(deployment(h, "scorer")) == "s3://models/churn/v4/"
    assert deployment(h, "scorer-canary") is None and h.kube.stored("v1", "Service", NS, "scorer-canary") is None
    assert route_weights(h) == [("scorer", 1)]


def test_without_a_gateway_the_pods_split_and_the_stable_stays_ready():
    h = start({})
    h.kube.calls.clear()
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY)
    # The stable Deployment is not touched at all (its generation moves with any annotation change).
    assert [c.name for c in h.kube.calls if c.method == "apply"] == ["scorer-canary"]
    # The stable Deployment keeps its size (Ready does not flicker); 1 canary pod of 5 ~ 10%.
    assert (deployment(h, "scorer")["spec"]["replicas"], deployment(h, "scorer-canary")["spec"]["replicas"]) == (4, 1)
    assert h.kube.stored("v1", "Service", NS, "scorer-canary") is None
    conditions = {c["type"]: c for c in body(h)["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["RolloutAborted"]["status"] == "False"
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    assert deployment(h, "scorer-canary")["spec"]["replicas"] == 4  # 50%: 4 of 8


def test_progress_deadline_aborts_keeps_stable_ready_and_warns():
    h = start({})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY)
    canary = deployment(h, "scorer-canary")
    canary["status"] = {"observedGeneration": canary["metadata"].get("generation", 1), "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                        "message": 'ReplicaSet "scorer-canary-1" has timed out progressing.'}]}
    h.add(canary)
    h.kube.calls.clear()
    h.reconcile(body(h))
    status = rollout(h)
    assert (status["phase"], status["canaryWeight"], status["reason"]) == ("Aborted", 0, "ProgressDeadlineExceeded")
    assert deployment(h, "scorer-canary") is None
    assert deployment(h, "scorer")["spec"]["replicas"] == 4 and uri(deployment(h, "scorer")) == "s3://models/churn/v3/"
    conditions = {c["type"]: c for c in body(h)["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert (conditions["RolloutAborted"]["status"], conditions["RolloutAborted"]["reason"]) == \
        ("True", "ProgressDeadlineExceeded")
    events = [c.detail for c in h.kube.calls if c.method == "post_event"]
    assert ("Warning", "ProgressDeadlineExceeded") in events
    h.kube.calls.clear()
    h.reconcile(body(h))  # aborted stays aborted: nothing more to write or announce
    assert [c for c in h.kube.calls if c.method in ("apply", "patch_status", "post_event")] == []


def test_status_rollout_keys_that_end_are_removed():
    h = start({})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY)
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    assert "stepStartTime" in rollout(h)
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoted" and "stepStartTime" not in rollout(h)


def test_under_an_hpa_the_stable_size_stays_the_hpa_s_and_the_canary_takes_its_share():
    autoscaling = {"minReplicas": 2, "maxReplicas": 10, "targets": {"cpuUtilization": 70}}
    h = start({"autoscaling": autoscaling})
    hpa = h.kube.stored("autoscaling/v2", "HorizontalPodAutoscaler", NS, "scorer")
    hpa["status"] = {"currentReplicas": 6, "desiredReplicas": 6}
    h.add(hpa)
    stable = deployment(h, "scorer")
    stable["spec"]["replicas"] = 6  # the HPA's doing
    h.add(stable)
    h.kube.calls.clear()
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, autoscaling=autoscaling)
    assert deployment(h, "scorer")["spec"]["replicas"] == 6
    assert not [c for c in h.kube.calls if c.method in ("apply", "hand_over") and c.name == "scorer"]
    assert deployment(h, "scorer-canary")["spec"]["replicas"] == 1  # round(6 * 10 / 90)
