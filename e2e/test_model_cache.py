"""model.cache on the real control plane: two ModelDeployments of one URI share one claim filled by one Job,
replicas mount it read-only; a fill that cannot run (no storage) is reported; the last user's deletion lets
the garbage collector take the claim."""

from __future__ import annotations

from harness import condition, get_cr, resource, wait_condition

URI = "s3://models/churn/v3/"


def cached(storage_class: str) -> dict:
    return {"model": {"uri": URI, "format": "sklearn", "cache": {"size": "1Gi", "storageClassName": storage_class}},
            "runtime": {"preset": "sklearn"}, "resources": {"cpu": "100m", "memory": "256Mi"}, "replicas": 2}


def static_pv(kubectl, name: str, storage_class: str) -> None:
    kubectl.run("apply", "-f", "-", stdin=f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteMany]
  storageClassName: {storage_class}
  hostPath: {{path: /tmp/{name}}}
""")


def test_two_deployments_of_one_uri_share_one_claim_filled_once(operator, kubectl, custom, namespace, core_v1,
                                                                 batch_v1, wait_for):
    storage_class = f"cache-{namespace}"[:63]
    static_pv(kubectl, f"pv-{namespace}"[:63], storage_class)
    try:
        kubectl.apply(resource("ModelDeployment", "churn-a", cached(storage_class)), namespace)
        kubectl.apply(resource("ModelDeployment", "churn-b", cached(storage_class)), namespace)
        a = wait_condition(wait_for, custom, "ModelDeployment", namespace, "churn-a", "Ready", "True", timeout=120)
        b = wait_condition(wait_for, custom, "ModelDeployment", namespace, "churn-b", "Ready", "True", timeout=120)
        for body in (a, b):
            assert condition(body, "ModelCached")["status"] == "True"
            assert condition(body, "ModelCached")["reason"] == "Filled"
        claims = core_v1.list_namespaced_persistent_volume_claim(namespace).items
        assert len(claims) == 1
        claim = claims[0]
        assert claim.metadata.name.startswith("model-cache-") and claim.status.phase == "Bound"
        # Each user holds it through a ControllerRevision of its own (pruned when it no longer needs the claim).
        suffix = claim.metadata.name[len("model-cache-"):]
        assert {(r.kind, r.name) for r in claim.metadata.owner_references} == \
            {("ControllerRevision", f"churn-a-cache-{suffix}"), ("ControllerRevision", f"churn-b-cache-{suffix}")}
        jobs = batch_v1.list_namespaced_job(namespace).items
        assert [j.metadata.name for j in jobs] == [f"{claim.metadata.name}-fill"]
        assert jobs[0].status.succeeded == 1
        pods = core_v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=predictor").items
        assert len(pods) == 4
        for pod in pods:
            assert not pod.spec.init_containers
            model = next(v for v in pod.spec.volumes if v.name == "model")
            assert model.persistent_volume_claim.claim_name == claim.metadata.name
            assert model.persistent_volume_claim.read_only

        # The last user gone, the garbage collector removes the claim and the Job.
        kubectl.run("delete", "modeldeployment", "churn-a", "-n", namespace, "--wait=true")
        assert core_v1.read_namespaced_persistent_volume_claim(claim.metadata.name, namespace)  # b still uses it
        kubectl.run("delete", "modeldeployment", "churn-b", "-n", namespace, "--wait=true")

        def claim_gone():
            items = core_v1.list_namespaced_persistent_volume_claim(namespace).items
            return not [c for c in items if not c.metadata.deletion_timestamp]
        wait_for(claim_gone, timeout=60, what="the cache claim garbage-collected")
        wait_for(lambda: not batch_v1.list_namespaced_job(namespace).items, timeout=60, what="the fill Job collected")
    finally:
        kubectl.run("delete", "pv", f"pv-{namespace}"[:63], "--wait=false", check=False)


def test_a_fill_that_cannot_run_is_reported_and_nothing_is_served(operator, kubectl, custom, namespace, apps_v1,
                                                                   wait_for):
    kubectl.apply(resource("ModelDeployment", "no-storage", cached("no-such-class")), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "no-storage", "Ready", "False",
                          "ClaimPending", timeout=60)
    assert "not Bound" in condition(body, "ModelCached")["message"]
    assert body["status"]["phase"] == "Progressing"
    assert not apps_v1.list_namespaced_deployment(namespace).items  # withheld: its pods would mount an empty claim


def test_a_new_uri_is_filled_before_the_running_deployment_takes_it(operator, kubectl, custom, namespace, core_v1,
                                                                    batch_v1, wait_for):
    """A new model URI (a new fromTrainingJob run, here an edit of model.uri): its claim is filled while the
    running template keeps serving; the Deployment takes the new template only after the fill Job completed
    (watched on every state of both)."""
    from mlplatform.render.model_cache import cache_claim_name
    from recorder import Recorder

    storage_class = f"cache2-{namespace}"[:63]
    pvs = [f"pv{i}-{namespace}"[:63] for i in (1, 2, 3)]
    for pv in pvs:
        static_pv(kubectl, pv, storage_class)
    try:
        kubectl.apply(resource("ModelDeployment", "churn", cached(storage_class)), namespace)
        wait_condition(wait_for, custom, "ModelDeployment", namespace, "churn", "Ready", "True", timeout=120)
        new_uri = "s3://models/churn/v4/"
        new_claim, fill = cache_claim_name(new_uri), f"{cache_claim_name(new_uri)}-fill"
        deployments = Recorder(custom.list_namespaced_custom_object, "apps", "v1", namespace, "deployments",
                               name="churn")
        jobs = Recorder(custom.list_namespaced_custom_object, "batch", "v1", namespace, "jobs", name=fill)
        spec = cached(storage_class)
        spec["model"]["uri"] = new_uri
        kubectl.apply(resource("ModelDeployment", "churn", spec), namespace)

        def on_new_claim():
            body = get_cr(custom, "ModelDeployment", namespace, "churn")
            done = body["status"].get("observedGeneration") == body["metadata"]["generation"] and \
                condition(body, "Ready").get("status") == "True" and \
                condition(body, "ModelCached").get("status") == "True"
            return body if done and body["status"].get("modelUri") == new_uri else None
        wait_for(on_new_claim, timeout=120, what="serving the new URI from its filled claim")

        def mounts(dep: dict) -> str:
            volumes = dep["spec"]["template"]["spec"]["volumes"]
            return next(v for v in volumes if v["name"] == "model")["persistentVolumeClaim"]["claimName"]
        deployment_states, job_states = deployments.stop(), jobs.stop()
        completed = [int(j["metadata"]["resourceVersion"]) for j in job_states
                     if any(c["type"] == "Complete" and c["status"] == "True"
                            for c in (j.get("status") or {}).get("conditions") or [])]
        switched = [int(d["metadata"]["resourceVersion"]) for d in deployment_states if mounts(d) == new_claim]
        assert completed and switched, (len(job_states), len(deployment_states))
        assert min(switched) > min(completed), "the Deployment took the new claim before its fill completed"

        # One more run: once the Deployment has settled on its claim, the one before the previous is let go
        # (operator default: keep 1 previous claim for a rollback) and the garbage collector deletes it.
        newest = "s3://models/churn/v5/"
        spec["model"]["uri"] = newest
        kubectl.apply(resource("ModelDeployment", "churn", spec), namespace)
        new_uri = newest
        wait_for(on_new_claim, timeout=120, what="serving v5 from its filled claim")

        def claims() -> set[str]:
            return {c.metadata.name for c in core_v1.list_namespaced_persistent_volume_claim(namespace).items
                    if not c.metadata.deletion_timestamp}
        first, previous, current = (cache_claim_name(u) for u in (URI, "s3://models/churn/v4/", newest))
        wait_for(lambda: claims() == {previous, current}, timeout=60, what=f"{first} pruned, {previous} kept")
        wait_for(lambda: f"{first}-fill" not in {j.metadata.name for j in batch_v1.list_namespaced_job(namespace).items},
                 timeout=60, what="its fill Job collected")
    finally:
        kubectl.run("delete", "modeldeployment", "churn", "-n", namespace, "--wait=true", check=False)
        for pv in pvs:
            kubectl.run("delete", "pv", pv, "--wait=false", check=False)
