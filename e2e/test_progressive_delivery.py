"""Progressive delivery on the real control plane, GitOps style (manifests server-side applied, nothing
imperative except a test playing the Gateway controller on a route's status):

- a model update goes out as a canary 10 -> 50 -> 100, HTTPRoute weights and Deployment templates checked
  at each step; a crash-looping canary is aborted while the stable version stays Ready; pause holds; an edit
  mid-canary restarts from step 1;
- TrainingJob metrics from worker 0's termination message gate what a ModelDeployment deploys;
- the Gateway API CRDs (v1.6.3) are installed; a refused route makes the resource not Ready.

Run with -s to see status.rollout at each step and the Events of the aborted canary (the transcript is also
written to .run/progressive-delivery-kubectl.txt).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "controlplane"))

import gateway_api
from harness import E2E_OPERATOR_CONFIG, ROOT, Operator, condition, get_cr, resource
from recorder import Recorder

FIELD_MANAGER = "argocd-controller"  # as a GitOps controller applies
STEP_SECONDS = 4
PROGRESS_DEADLINE = 8
TRANSCRIPT = ROOT / ".run" / "progressive-delivery-kubectl.txt"
MODEL_URI_ANNOTATION = "mlplatform.dev/model-uri"


@pytest.fixture(scope="module")
def gateway_crds(kubectl, crds):
    """The crds fixture installs the Gateway API standard CRDs too: served, at the pinned version."""
    crd = json.loads(kubectl.run("get", "crd", "httproutes.gateway.networking.k8s.io", "-o", "json").stdout)
    annotations = crd["metadata"]["annotations"]
    assert annotations["gateway.networking.k8s.io/bundle-version"] == gateway_api.versions.GATEWAY_API
    assert annotations["gateway.networking.k8s.io/channel"] == "standard"
    return crd


@pytest.fixture(scope="module")
def delivery_operator(kubeconfig, crds, gateway_crds, no_session_operator, tmp_path_factory):
    """An operator started after the Gateway CRDs are served, with a short canary progress deadline."""
    config = tmp_path_factory.mktemp("delivery") / "config.yaml"
    config.write_text(yaml.safe_dump({**E2E_OPERATOR_CONFIG,
                                      "defaults": {"canaryProgressDeadlineSeconds": PROGRESS_DEADLINE}}))
    process = Operator(kubeconfig, ROOT / ".run" / "e2e-delivery-operator.log")
    process.start(config)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def transcript():
    TRANSCRIPT.parent.mkdir(parents=True, exist_ok=True)
    out = open(TRANSCRIPT, "w")

    def write(title: str, text: str) -> None:
        block = f"### {title}\n{text.rstrip()}\n\n"
        print("\n" + block, end="")
        out.write(block)
        out.flush()
    yield write
    out.close()


def apply(kubectl, manifest: dict, namespace: str, check: bool = True):
    return kubectl.run("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
                       "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest), check=check)


def model(uri: str, **extra) -> dict:
    spec = {"model": {"uri": uri, "format": "sklearn"}, "runtime": {"preset": "sklearn"},
            "resources": {"cpu": "100m", "memory": "128Mi"}, "replicas": 2}
    spec.update(extra)
    return spec


def md_yaml_rollout(kubectl, namespace: str, name: str) -> str:
    """status.rollout as `kubectl get md -o yaml` shows it."""
    body = yaml.safe_load(kubectl.run("get", "md", name, "-n", namespace, "-o", "yaml").stdout)
    return yaml.safe_dump({"status": {"rollout": body["status"].get("rollout")}}, sort_keys=False)


def deployment(apps_v1, namespace: str, name: str):
    from kubernetes.client.rest import ApiException
    try:
        return apps_v1.read_namespaced_deployment(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def template_uri(dep) -> str | None:
    return (dep.spec.template.metadata.annotations or {}).get(MODEL_URI_ANNOTATION) if dep else None


def route(custom, namespace: str, name: str) -> dict | None:
    from kubernetes.client.rest import ApiException
    try:
        return custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", name)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def backend_weights(obj: dict | None) -> list[tuple[str, int]]:
    return [(b["name"], b.get("weight", 1)) for b in ((obj or {}).get("spec") or {}).get("rules", [{}])[0]
            .get("backendRefs", [])]


def rollout(custom, namespace: str, name: str) -> dict:
    return (get_cr(custom, "ModelDeployment", namespace, name).get("status") or {}).get("rollout") or {}


def when(timestamp: str):
    """An RFC 3339 time of the API (seconds, or microseconds as status.rollout's): compared as times, not text."""
    from datetime import datetime
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def wait_ready(wait_for, custom, namespace: str, name: str, timeout: float = 90) -> dict:
    def check():
        body = get_cr(custom, "ModelDeployment", namespace, name)
        current = (body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"]
        return body if current and condition(body, "Ready").get("status") == "True" else None
    return wait_for(check, timeout=timeout, interval=0.3, what=f"ModelDeployment {name} Ready")


def wait_rollout(wait_for, custom, namespace: str, name: str, predicate, what: str, timeout: float = 60) -> dict:
    def check():
        status = rollout(custom, namespace, name)
        return status if predicate(status) else None
    return wait_for(check, timeout=timeout, interval=0.25, what=f"{name} status.rollout {what}")


def test_canary_behind_a_gateway_goes_10_50_100(delivery_operator, kubectl, custom, apps_v1, namespace, wait_for,
                                                transcript):
    name = "scorer"
    gateway = {"parentRefs": [{"name": "inference", "namespace": "gateway-system"}], "hostnames": ["scorer.example.com"]}
    canary = {"canary": {"steps": [10, 50], "stepSeconds": STEP_SECONDS}}
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/churn/v1/", gateway=gateway, rollout=canary)),
          namespace)
    wait_ready(wait_for, custom, namespace, name)
    # The first deployment is never a canary.
    assert rollout(custom, namespace, name) == {}
    assert deployment(apps_v1, namespace, f"{name}-canary") is None
    assert backend_weights(route(custom, namespace, name)) == [(name, 1)]

    apply(kubectl, resource("ModelDeployment", name, model("s3://models/churn/v2/", gateway=gateway, rollout=canary)),
          namespace)
    for step, weight in ((1, 10), (2, 50)):
        # A step's weight is routed once the canary has the Ready pods for it.
        status = wait_rollout(wait_for, custom, namespace, name,
                              lambda s, step=step, weight=weight: s.get("step") == step
                              and s.get("phase") == "Progressing" and s.get("canaryWeight") == weight,
                              f"step {step} at {weight}%")
        transcript(f"canary step {step} ({weight}%): kubectl get md {name} -o yaml", md_yaml_rollout(kubectl, namespace, name))
        assert status["canaryWeight"] == weight
        assert (status["stableModelUri"], status["canaryModelUri"]) == ("s3://models/churn/v1/", "s3://models/churn/v2/")
        # Weights land on the route exactly; the stable Deployment keeps the old template, the canary runs the new.
        wait_for(lambda weight=weight: backend_weights(route(custom, namespace, name)) == [(name, 100 - weight),
                                                                            (f"{name}-canary", weight)],
                 timeout=10, interval=0.2, what=f"route weights {100 - weight}/{weight}")
        assert template_uri(deployment(apps_v1, namespace, name)) == "s3://models/churn/v1/"
        assert template_uri(deployment(apps_v1, namespace, f"{name}-canary")) == "s3://models/churn/v2/"
        assert condition(get_cr(custom, "ModelDeployment", namespace, name), "Ready")["status"] == "True"

    status = wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("phase") == "Promoted", "Promoted")
    transcript(f"canary promoted (100%): kubectl get md {name} -o yaml", md_yaml_rollout(kubectl, namespace, name))
    assert status["canaryWeight"] == 100 and status["stableModelUri"] == "s3://models/churn/v2/"
    wait_for(lambda: deployment(apps_v1, namespace, f"{name}-canary") is None, timeout=30, what="canary removed")
    assert template_uri(deployment(apps_v1, namespace, name)) == "s3://models/churn/v2/"
    wait_for(lambda: backend_weights(route(custom, namespace, name)) == [(name, 1)], timeout=10,
             what="route back to one backend")
    body = wait_ready(wait_for, custom, namespace, name)
    assert condition(body, "RolloutAborted")["status"] == "False"


def test_crashlooping_canary_is_aborted_and_stable_stays_ready(delivery_operator, kubectl, custom, apps_v1, core_v1,
                                                               namespace, wait_for, transcript):
    name = "churn"
    canary = {"canary": {"steps": [25], "stepSeconds": STEP_SECONDS}}
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/churn/v1/", rollout=canary)), namespace)
    wait_ready(wait_for, custom, namespace, name)
    # The new version crash-loops (the kwok stage reads this annotation, which the operator copies to pods).
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/churn/v2/", rollout=canary),
                            annotations={"mlplatform.dev/kwok-crashloop": "true"}), namespace)
    wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("step") == 1 and s.get("phase") == "Progressing",
                 "step 1")
    transcript(f"crash-looping canary, step 1: kubectl get md {name} -o yaml", md_yaml_rollout(kubectl, namespace, name))
    # Without a Gateway the shared Service splits by pods: 1 canary pod next to the 2 stable ones (~25%).
    wait_for(lambda: (deployment(apps_v1, namespace, f"{name}-canary") or None) and
             deployment(apps_v1, namespace, f"{name}-canary").spec.replicas == 1, timeout=15, what="1 canary pod")
    assert deployment(apps_v1, namespace, name).spec.replicas == 2

    status = wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("phase") == "Aborted", "Aborted",
                          timeout=PROGRESS_DEADLINE + 60)
    transcript(f"aborted canary: kubectl get md {name} -o yaml", md_yaml_rollout(kubectl, namespace, name))
    assert status["canaryWeight"] == 0 and status["reason"] == "ProgressDeadlineExceeded"
    assert "CrashLoopBackOff" in status["message"], status
    wait_for(lambda: deployment(apps_v1, namespace, f"{name}-canary") is None, timeout=30, what="canary removed")
    body = wait_ready(wait_for, custom, namespace, name)
    aborted = condition(body, "RolloutAborted")
    assert (aborted["status"], aborted["reason"]) == ("True", "ProgressDeadlineExceeded")
    assert template_uri(deployment(apps_v1, namespace, name)) == "s3://models/churn/v1/"
    assert deployment(apps_v1, namespace, name).spec.replicas == 2

    def warning():
        events = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return [e for e in events if e.reason == "ProgressDeadlineExceeded" and e.type == "Warning"]
    wait_for(warning, timeout=15, what="Warning Event of the abort")
    events = kubectl.run("get", "events", "-n", namespace, "--field-selector",
                         f"involvedObject.kind=ModelDeployment,involvedObject.name={name}",
                         "--sort-by=.lastTimestamp", "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message")
    transcript(f"Events of the aborted canary: kubectl get events --field-selector involvedObject.name={name}",
               events.stdout)
    ready_since = condition(body, "Ready")["lastTransitionTime"]
    assert when(ready_since) <= when(status["startTime"]), "Ready flipped during the canary"
    assert "RollingOut" not in events.stdout, "Ready left True during the canary"

    # The same template stays aborted; a later spec change starts a new canary.
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/churn/v3/", rollout=canary)), namespace)
    status = wait_rollout(wait_for, custom, namespace, name,
                          lambda s: s.get("canaryModelUri") == "s3://models/churn/v3/" and s.get("phase") == "Progressing",
                          "a new canary")
    assert status["step"] == 1


def test_pause_holds_and_an_edit_mid_canary_restarts_from_step_1(delivery_operator, kubectl, custom, apps_v1,
                                                                  namespace, wait_for, transcript):
    import time

    name = "held"
    paused = {"canary": {"steps": [10, 50], "stepSeconds": 1, "pause": True}}
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/m/v1/", rollout=paused)), namespace)
    wait_ready(wait_for, custom, namespace, name)
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/m/v2/", rollout=paused)), namespace)
    wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("phase") == "Paused", "Paused")
    wait_for(lambda: deployment(apps_v1, namespace, f"{name}-canary"), timeout=15, what="canary Deployment")
    wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("canaryWeight") == 10, "10% once Ready")
    time.sleep(4 * 1)  # four times stepSeconds: a running canary would have moved on
    status = rollout(custom, namespace, name)
    transcript(f"paused canary: kubectl get md {name} -o yaml", md_yaml_rollout(kubectl, namespace, name))
    assert (status["phase"], status["step"], status["canaryWeight"]) == ("Paused", 1, 10)

    running = {"canary": {"steps": [10, 50], "stepSeconds": STEP_SECONDS, "pause": False}}
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/m/v2/", rollout=running)), namespace)
    first = wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("step") == 2, "step 2")
    # An edit during the canary: back to step 1 with the newest template.
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/m/v3/", rollout=running)), namespace)
    status = wait_rollout(wait_for, custom, namespace, name,
                          lambda s: s.get("canaryModelUri") == "s3://models/m/v3/", "restarted for v3")
    transcript(f"edit mid-canary: kubectl get md {name} -o yaml", md_yaml_rollout(kubectl, namespace, name))
    assert (status["step"], status["stableModelUri"]) == (1, "s3://models/m/v1/")
    assert status["canaryWeight"] in (0, 10)  # 0 until the v3 canary pod is Ready
    assert when(status["startTime"]) > when(first["startTime"]) and status["canaryHash"] != first["canaryHash"]
    wait_for(lambda: template_uri(deployment(apps_v1, namespace, f"{name}-canary")) == "s3://models/m/v3/",
             timeout=15, what="canary on v3")
    wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("phase") == "Promoted", "Promoted", timeout=90)
    assert template_uri(deployment(apps_v1, namespace, name)) == "s3://models/m/v3/"


def _rv(obj: dict) -> int:
    """resourceVersions of one etcd order the states of different objects (the local control plane has one)."""
    return int(obj["metadata"]["resourceVersion"])


def test_slow_canary_pods_get_no_weight_until_ready_and_promotion_never_drops_the_share(
        delivery_operator, kubectl, custom, apps_v1, namespace, wait_for, transcript):
    """The new version's pods take 6 s to start (kwok start delay): the canary gets no traffic until it has Ready
    pods; at promotion the stable Deployment's pods (the new template, as slow) roll while the canary keeps the
    last step's share; watched on every state: the route never gives the new version less than that share, and
    Ready never leaves True."""
    name = "slowcanary"
    gateway = {"parentRefs": [{"name": "inference", "namespace": "gateway-system"}]}
    canary = {"canary": {"steps": [25, 50], "stepSeconds": 2}}
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/slow/v1/", gateway=gateway, rollout=canary,
                                                           replicas=4)), namespace)
    wait_ready(wait_for, custom, namespace, name)
    routes = Recorder(custom.list_namespaced_custom_object, "gateway.networking.k8s.io", "v1", namespace, "httproutes",
                      name=name)
    bodies = Recorder(custom.list_namespaced_custom_object, "mlplatform.dev", "v1alpha1", namespace, "modeldeployments",
                      name=name)
    canaries = Recorder(custom.list_namespaced_custom_object, "apps", "v1", namespace, "deployments",
                        name=f"{name}-canary")  # as plain dicts
    slow = resource("ModelDeployment", name, model("s3://models/slow/v2/", gateway=gateway, rollout=canary, replicas=4),
                    annotations={"mlplatform.dev/kwok-start-after": "6s"})
    apply(kubectl, slow, namespace)
    wait_rollout(wait_for, custom, namespace, name, lambda s: s.get("phase") == "Promoted", "Promoted", timeout=120)
    wait_for(lambda: backend_weights(route(custom, namespace, name)) == [(name, 1)], timeout=20, what="one backend")
    route_states, md_states, canary_states = routes.stop(), bodies.stop(), canaries.stop()
    transcript(f"slow canary promoted: kubectl get md {name} -o yaml", md_yaml_rollout(kubectl, namespace, name))

    # No weight before the canary had a Ready pod (resourceVersions order the states of one etcd).
    first_ready = min((_rv(d) for d in canary_states if ((d.get("status") or {}).get("readyReplicas") or 0) > 0),
                      default=None)
    weighted = [r for r in route_states if dict(backend_weights(r)).get(f"{name}-canary", 0) > 0]
    assert first_ready is not None and weighted, (len(canary_states), len(route_states))
    assert min(_rv(r) for r in weighted) > first_ready, "the canary got traffic before any of its pods was Ready"
    assert any(backend_weights(r) == [(name, 100), (f"{name}-canary", 0)] for r in route_states)

    # From the last step on, the new version's share never drops below it.
    shares = [backend_weights(r) for r in route_states]
    last_step = next(i for i, w in enumerate(shares) if dict(w).get(f"{name}-canary") == 50)
    for weights in shares[last_step:]:
        assert weights in ([(name, 50), (f"{name}-canary", 50)], [(name, 1)]), shares[last_step:]
    # Ready True in every state of the resource from the edit to the promotion.
    after_edit = [b for b in md_states if b["metadata"]["generation"] >= 2]
    assert after_edit
    for body in after_edit:
        ready = condition(body, "Ready")
        assert ready.get("status") == "True", (body["metadata"]["resourceVersion"], ready, body["status"].get("rollout"))
    phases = [(b["status"].get("rollout") or {}).get("phase") for b in after_edit]
    assert "Promoting" in phases and phases[-1] == "Promoted"


def test_a_refused_route_makes_the_model_not_ready(delivery_operator, kubectl, custom, namespace, wait_for):
    """No Gateway controller runs: the test writes the route's status as one would."""
    name = "routed"
    gateway = {"parentRefs": [{"name": "inference"}]}
    apply(kubectl, resource("ModelDeployment", name, model("s3://models/r/v1/", gateway=gateway)), namespace)
    body = wait_ready(wait_for, custom, namespace, name)
    assert condition(body, "RouteAccepted")["reason"] == "WaitingForGateway"

    def parent_status(accepted: str, reason: str, message: str) -> dict:
        now = "2026-01-01T00:00:00Z"
        return {"status": {"parents": [{
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference"},
            "controllerName": "example.com/gateway-controller",
            "conditions": [
                {"type": "Accepted", "status": accepted, "reason": reason, "message": message,
                 "observedGeneration": 1, "lastTransitionTime": now},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "",
                 "observedGeneration": 1, "lastTransitionTime": now}]}]}}

    def set_status(patch: dict) -> None:
        kubectl.run("patch", "httproute", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps(patch))

    set_status(parent_status("False", "NotAllowedByListeners", "no listener of inference allows this namespace"))

    def refused():
        b = get_cr(custom, "ModelDeployment", namespace, name)
        return b if condition(b, "Ready").get("reason") == "NotAllowedByListeners" else None
    body = wait_for(refused, timeout=20, what="Ready False NotAllowedByListeners")
    assert condition(body, "Ready")["status"] == "False"
    assert "no listener of inference allows this namespace" in condition(body, "Ready")["message"]
    set_status(parent_status("True", "Accepted", ""))

    def accepted():
        b = get_cr(custom, "ModelDeployment", namespace, name)
        return b if condition(b, "RouteAccepted").get("status") == "True" else None
    body = wait_for(accepted, timeout=20, what="RouteAccepted True")
    assert condition(body, "Ready")["status"] == "True"


def test_the_api_server_refuses_promotion_without_fromtrainingjob(delivery_operator, kubectl, namespace):
    spec = model("s3://models/x/v1/")
    spec["model"]["promotion"] = {"metrics": [{"name": "auc", "min": 0.9}]}
    result = apply(kubectl, resource("ModelDeployment", "bad", spec), namespace, check=False)
    assert result.returncode != 0
    assert "spec.model.promotion" in result.stderr and "needs model.fromTrainingJob" in result.stderr, result.stderr


def test_training_metrics_gate_promotion(delivery_operator, kubectl, custom, core_v1, namespace, wait_for, transcript):
    trainer = "train"
    message = "mlplatform.dev/kwok-termination-message"

    def train(args: list[str], metrics: str) -> None:
        apply(kubectl, resource("TrainingJob", trainer, {
            "image": "python:3.12", "args": args, "resources": {"cpu": "100m", "memory": "128Mi"},
            "output": {"uri": "s3://models/gated/"}},
            annotations={message: metrics, "mlplatform.dev/kwok-complete-after": "1s"}), namespace)

    def tj_run_succeeded(run: int):
        def check():
            b = get_cr(custom, "TrainingJob", namespace, trainer)
            record = next((r for r in (b.get("status") or {}).get("runs") or [] if r["run"] == run), {})
            return b if record.get("phase") == "Succeeded" else None
        return wait_for(check, timeout=60, interval=0.3, what=f"run {run} succeeded")

    spec = {"model": {"fromTrainingJob": trainer, "format": "sklearn",
                      "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}},
            "runtime": {"preset": "sklearn"}, "resources": {"cpu": "100m", "memory": "128Mi"}, "replicas": 1}
    apply(kubectl, resource("ModelDeployment", "gated", spec), namespace)

    # Run 1 writes something that is not a JSON object of numbers: it succeeds, without metrics, and says why.
    train(["--run", "1"], "auc=0.99")
    body = tj_run_succeeded(1)
    assert "metrics" not in body["status"]["runs"][0]
    wait_for(lambda: [e for e in core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.name={trainer}")
                      .items if e.reason == "MetricsUnreadable" and "not JSON" in e.message],
             timeout=15, what="MetricsUnreadable Event")
    md = wait_for(lambda: (lambda b: b if condition(b, "Ready").get("reason") == "NoQualifyingRun" else None)(
        get_cr(custom, "ModelDeployment", namespace, "gated")), timeout=30, what="NoQualifyingRun")
    assert "run 1 skipped: auc not recorded" in condition(md, "ModelResolved")["message"]

    # Run 2 reports auc 0.95: promoted.
    train(["--run", "2"], '{"auc": 0.95, "loss": 0.2}')
    body = tj_run_succeeded(2)
    assert body["status"]["metrics"] == {"auc": 0.95, "loss": 0.2}
    md = wait_ready(wait_for, custom, namespace, "gated")
    assert (md["status"]["modelUri"], md["status"]["trainingJobRun"]) == ("s3://models/gated/run-2/", 2)

    # Run 3 reports auc 0.80: skipped, run 2 stays deployed, the message says which run and which metric.
    train(["--run", "3"], '{"auc": 0.80, "loss": 0.1}')
    tj_run_succeeded(3)

    def skipped():
        b = get_cr(custom, "ModelDeployment", namespace, "gated")
        return b if "run 3 skipped" in condition(b, "ModelResolved").get("message", "") else None
    md = wait_for(skipped, timeout=30, what="run 3 skipped")
    resolved = condition(md, "ModelResolved")
    transcript("promotion: ModelResolved of ModelDeployment gated", yaml.safe_dump(resolved, sort_keys=False))
    assert resolved["status"] == "True" and "run 3 skipped: auc 0.8 < min 0.9" in resolved["message"]
    assert md["status"]["modelUri"] == "s3://models/gated/run-2/"
    assert condition(md, "Ready")["status"] == "True"
