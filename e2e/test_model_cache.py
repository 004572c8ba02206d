"""model.cache on the real control plane: two ModelDeployments of one URI share one claim filled by one Job,
replicas mount it read-only; a fill that cannot run (no storage) is reported; the last user's deletion lets
the garbage collector take the claim."""

from __future__ import annotations

from harness import condition, resource, wait_condition

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
        assert {r.uid for r in claim.metadata.owner_references} == {a["metadata"]["uid"], b["metadata"]["uid"]}
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
