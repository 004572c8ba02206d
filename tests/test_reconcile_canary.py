"""The ModelDeployment reconciler with rollout.canary against the fake Kube: which Deployments it applies,
with which template and replicas, and what status.rollout says, step by step."""

from __future__ import annotations

import pytest

from mlplatform.labels import MODEL_URI_ANNOTATION, TEMPLATE_HASH_ANNOTATION
from mlplatform.runtime.kube import KubeError

from .fake_kube import kube_error
from .test_reconcilers import NS, Harness, model_deployment

CANARY = {"canary": {"steps": [10, 50], "stepSeconds": 0}}
GATEWAY = {"parentRefs": [{"name": "inference"}]}


def deployment(h: Harness, name: str) -> dict | None:
    return h.kube.stored("apps/v1", "Deployment", NS, name)


def uri(dep: dict | None) -> str | None:
    return dep["spec"]["template"]["metadata"]["annotations"][MODEL_URI_ANNOTATION] if dep else None


def ready(h: Harness, name: str, pods: bool = True) -> None:
    """The Deployment controller's word: every replica of the current generation ready (and its pods, Ready)."""
    dep = deployment(h, name)
    n = dep["spec"].get("replicas", 1)
    dep["metadata"]["generation"] = dep["metadata"].get("generation", 1)
    dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": n, "readyReplicas": n,
                     "updatedReplicas": n, "availableReplicas": n}
    h.add(dep)
    if pods:
        set_pods(h, name, n, ready=True)


def set_pods(h: Harness, name: str, n: int, ready: bool) -> None:
    """The Deployment's pods as the pod informer delivers them: n of its current template."""
    dep = deployment(h, name)
    for key in [k for k in h.kube.objects if k[1] == "Pod" and k[3].startswith(f"{name}-pod-")]:
        h.kube.objects.pop(key)
    h.sync()
    template = dep["spec"]["template"]
    for i in range(n):
        h.add({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{name}-pod-{i}", "namespace": NS, "labels": dict(template["metadata"]["labels"]),
                            "annotations": dict(template["metadata"].get("annotations") or {})},
               "spec": template["spec"],
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


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
    assert (rollout(h)["step"], rollout(h)["canaryWeight"]) == (1, 0)
    assert (uri(deployment(h, "scorer")), uri(deployment(h, "scorer-canary"))) == \
        ("s3://models/churn/v3/", "s3://models/churn/v4/")
    # With a Gateway the stable side keeps all 4 replicas; the canary gets its share, at least one.
    assert (deployment(h, "scorer")["spec"]["replicas"], deployment(h, "scorer-canary")["spec"]["replicas"]) == (4, 1)
    # No traffic to a canary that has no Ready pod yet.
    assert route_weights(h) == [("scorer", 100), ("scorer-canary", 0)]
    assert h.kube.stored("v1", "Service", NS, "scorer-canary") is not None

    ready(h, "scorer-canary")
    h.reconcile(body(h))  # step 1's 10% routed, held (stepSeconds 0): step 2, sized for 50%, 10% until Ready
    assert (rollout(h)["step"], rollout(h)["canaryWeight"]) == (2, 10)
    assert route_weights(h) == [("scorer", 90), ("scorer-canary", 10)]
    assert deployment(h, "scorer-canary")["spec"]["replicas"] == 2

    ready(h, "scorer-canary")
    h.reconcile(body(h))  # step 2 routed and held: promoting, the canary keeps its 50% while the stable rolls
    assert rollout(h)["phase"] == "Promoting"
    assert uri(deployment(h, "scorer")) == "s3://models/churn/v4/"
    assert deployment(h, "scorer-canary")["spec"]["replicas"] == 2
    assert route_weights(h) == [("scorer", 50), ("scorer-canary", 50)]

    ready(h, "scorer")  # the stable Deployment has rolled to the new template and is available
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoted"
    assert deployment(h, "scorer-canary") is None and h.kube.stored("v1", "Service", NS, "scorer-canary") is None
    assert route_weights(h) == [("scorer", 1)]


def rolling(h: Harness, name: str, updated: int, ready_: int) -> None:
    """The Deployment controller mid-rollout of the current generation: `updated` new pods, `ready_` ready in all."""
    dep = deployment(h, name)
    n = dep["spec"].get("replicas", 1)
    dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": n + 1,
                     "readyReplicas": ready_, "updatedReplicas": updated, "availableReplicas": ready_}
    h.add(dep)


def conditions_of(h: Harness) -> dict[str, dict]:
    return {c["type"]: c for c in body(h)["status"]["conditions"]}


def test_the_canary_gets_no_weight_until_its_pods_are_ready():
    h = start({"gateway": GATEWAY})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, gateway=GATEWAY)
    canary = deployment(h, "scorer-canary")
    canary["status"] = {"observedGeneration": canary["metadata"]["generation"], "replicas": 1, "readyReplicas": 0,
                        "updatedReplicas": 1}
    h.add(canary)
    for _ in range(3):  # however often it is reconciled while the canary pod starts
        h.reconcile(body(h))
        assert route_weights(h) == [("scorer", 100), ("scorer-canary", 0)]
        assert (rollout(h)["step"], rollout(h)["canaryWeight"]) == (1, 0)
        assert "stepStartTime" not in rollout(h)
    assert "waiting for 1 Ready canary replica(s) (0 Ready)" in rollout(h)["message"]


def test_promotion_keeps_the_canary_share_until_the_stable_is_available_and_ready_stays_true():
    h = start({"gateway": GATEWAY})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, gateway=GATEWAY)
    for _ in range(2):
        ready(h, "scorer-canary")
        h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoting" and conditions_of(h)["Ready"]["status"] == "True"
    for updated, ready_ in ((0, 4), (1, 4), (2, 5), (4, 4)):  # maxSurge rolling, maxUnavailable 0
        rolling(h, "scorer", updated, ready_)
        h.reconcile(body(h))
        assert rollout(h)["phase"] == "Promoting", (updated, ready_)
        assert route_weights(h) == [("scorer", 50), ("scorer-canary", 50)]
        assert deployment(h, "scorer-canary") is not None
        ready_cond = conditions_of(h)["Ready"]
        assert (ready_cond["status"], ready_cond["reason"]) == ("True", "AllReplicasAvailable"), ready_cond
    ready(h, "scorer")
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoted" and conditions_of(h)["Ready"]["status"] == "True"
    assert route_weights(h) == [("scorer", 1)]
    assert [c for c in h.kube.events if c["reason"] == "RollingOut"] == []


def test_a_promotion_whose_status_write_failed_is_not_taken_for_a_revert():
    h = start({"gateway": GATEWAY})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, gateway=GATEWAY)
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    ready(h, "scorer-canary")
    h.kube.fail("patch_status", "ModelDeployment", "scorer", kube_error(500, "etcd timeout"))
    with pytest.raises(KubeError):
        h.reconcile(body(h))  # the stable Deployment took the new template; status.rollout still says step 2
    assert uri(deployment(h, "scorer")) == "s3://models/churn/v4/"
    assert rollout(h)["phase"] == "Progressing"
    h.kube._failures.clear()
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoting" and "reason" not in rollout(h)
    assert route_weights(h) == [("scorer", 50), ("scorer-canary", 50)]
    ready(h, "scorer")
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoted"
    assert conditions_of(h)["RolloutAborted"]["status"] == "False"


def test_without_a_gateway_the_pods_split_and_the_stable_stays_ready():
    h = start({})
    h.kube.calls.clear()
    stable_hash = deployment(h, "scorer")["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY)
    # The stable Deployment is not touched at all (its generation moves with any annotation change).
    assert [c.name for c in h.kube.calls if c.method == "apply"] == ["scorer-stable-" + stable_hash, "scorer-canary"]
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
    assert rollout(h)["step"] == 2 and "stepStartTime" not in rollout(h), "step 2 waits for its Ready capacity"
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoting" and "stepStartTime" not in rollout(h)
    ready(h, "scorer")
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


def test_a_step_holds_from_when_its_weight_was_routed_with_sub_second_precision():
    hold = {"canary": {"steps": [10, 50], "stepSeconds": 60}}
    h = start({"gateway": GATEWAY})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=hold, gateway=GATEWAY)
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    started = rollout(h)["stepStartTime"]
    assert rollout(h)["canaryWeight"] == 10 and len(started) == len("2026-11-28T12:00:00.123456Z")
    h.reconcile(body(h))
    assert rollout(h)["stepStartTime"] == started and rollout(h)["step"] == 1


def revisions(h: Harness) -> list[dict]:
    return [o for (av, kind, ns, name), o in h.kube.objects.items() if kind == "ControllerRevision"]


def test_the_stable_template_is_kept_in_a_controller_revision_while_the_canary_runs():
    h = start({"gateway": GATEWAY})
    stable_template = deployment(h, "scorer")["spec"]["template"]
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, gateway=GATEWAY)
    revision, = revisions(h)
    stable_hash = deployment(h, "scorer")["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    assert revision["metadata"]["name"] == f"scorer-stable-{stable_hash}"
    assert revision["data"] == {"template": stable_template, "templateHash": stable_hash}
    assert revision["metadata"]["ownerReferences"][0]["uid"] == body(h)["metadata"]["uid"]
    for _ in range(2):
        ready(h, "scorer-canary")
        h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoting" and len(revisions(h)) == 1
    ready(h, "scorer")
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoted" and revisions(h) == []  # pruned with the canary


def test_a_stable_deployment_deleted_mid_canary_comes_back_with_the_stable_template():
    h = start({"gateway": GATEWAY})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, gateway=GATEWAY)
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    assert (rollout(h)["step"], rollout(h)["canaryWeight"]) == (2, 10)
    h.kube.delete("apps/v1", "Deployment", NS, "scorer")
    h.sync()
    h.reconcile(body(h))
    assert uri(deployment(h, "scorer")) == "s3://models/churn/v3/", "the new template went to 100% at once"
    assert deployment(h, "scorer")["spec"]["replicas"] == 4
    assert rollout(h)["phase"] == "Progressing" and rollout(h)["step"] == 2
    assert uri(deployment(h, "scorer-canary")) == "s3://models/churn/v4/"
    assert route_weights(h) == [("scorer", 90), ("scorer-canary", 10)]


def test_a_canary_scaled_up_for_the_next_step_keeps_the_weight_its_ready_pods_carry():
    """The canary Deployment's status lags its scale-up by a generation; its Ready pods still serve: the
    route keeps their share (counted from the pods) instead of dropping to 0 until the controller catches up."""
    h = start({"gateway": GATEWAY})
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=CANARY, gateway=GATEWAY)
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    assert deployment(h, "scorer-canary")["spec"]["replicas"] == 2
    for _ in range(2):
        h.reconcile(body(h))
        assert route_weights(h) == [("scorer", 90), ("scorer-canary", 10)]
