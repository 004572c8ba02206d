"""Races of the control loop, each with its interleaving injected (a hook between two steps), never a sleep.

- a late apply or status-patch response never brings back an object whose DELETED event was handled first;
- a resource deleted while a worker reconciles it leaves no metric series behind;
- a failing watch handler is reported and its change enqueued again, and the watch goes on;
- a leader whose lease is not current (deposed, or frozen past its renew deadline) sends no write.
Also: a not-Ready owner's pending pods have their Warning Events read per pod, never the whole namespace's.
"""

from __future__ import annotations

import json

import kubernetes
import pytest

from mlplatform.api.common import API_VERSION
from mlplatform.controllers import incarnations
from mlplatform.labels import OWNER_LABEL
from mlplatform.runtime import leader, loop
from mlplatform.runtime.cache import Change
from mlplatform.runtime.expectations import EXPECTATION_TIMEOUT_SECONDS
from mlplatform.runtime.kube import WARNING_EVENT_PODS, Fenced, Kube
from mlplatform.runtime.leader import LeaderElector, LeaseSettings

from .fake_kube import FakeKube, deliver_writes
from .test_cache import ListWatch, event, md, page, run_informer
from .test_reconcilers import FIXED, NS, Clock, Harness, key_of, training_job

DEPLOYMENT = ("Deployment", NS, "scorer")


class DeletedAfterWrite(FakeKube):
    """Between a write returning and the reconcile's next step, the object is deleted and the informer
    handles the DELETED event (the window the old code's `cache.upsert(response)` fell into)."""

    def __init__(self, kind: str, name: str, **kwargs):
        super().__init__(**kwargs)
        self.target = (kind, name)
        self.cache = None
        self.fired = False

    def _delete_behind_the_reconcile(self, kind: str, name: str) -> None:
        if self.fired or (kind, name) != self.target:
            return
        self.fired = True
        key = next(k for k in self.objects if (k[1], k[3]) == (kind, name))
        gone = self.objects.pop(key)
        gone["metadata"]["resourceVersion"] = self._next_version()  # a DELETED event's version
        self.cache.remove(kind, gone)

    def apply(self, obj, field_manager=None):
        applied = super().apply(obj, **({"field_manager": field_manager} if field_manager else {}))
        self._delete_behind_the_reconcile(obj["kind"], obj["metadata"]["name"])
        return applied

    def patch_status(self, kind, namespace, name, status):
        updated = super().patch_status(kind, namespace, name, status)
        self._delete_behind_the_reconcile(kind, name)
        return updated


def harness_deleting(kind: str, name: str) -> Harness:
    kube = DeletedAfterWrite(kind, name, local_queues=((NS, "team-a"),))
    h = Harness(kube, clock=Clock())
    kube.cache = h.ctx.cache
    return h


def test_a_child_deleted_after_our_apply_is_no_ghost_and_is_applied_again():
    h = harness_deleting("Deployment", "scorer")
    key = key_of(h.add(FIXED))

    assert loop.process(h.ctx, key) is loop.Outcome.DONE
    assert h.kube.fired
    assert h.ctx.cache.child(key, "Deployment", "scorer") is None, "the late apply response came back as a ghost"
    unseen = {(w.kind, w.name) for w in h.ctx.expectations.unseen(key, h.ctx.cache)}
    assert ("Deployment", "scorer") not in unseen, "the DELETED event is newer than our write: seen"

    deliver_writes(h.ctx, h.kube)
    h.kube.calls.clear()
    assert loop.process(h.ctx, key) is loop.Outcome.DONE
    assert ("Deployment", "scorer") in [(c.kind, c.name) for c in h.kube.called("apply")]


def test_a_resource_deleted_after_our_status_write_stays_deleted_and_is_cleaned_up():
    h = harness_deleting("ModelDeployment", "scorer")
    key = key_of(h.add(FIXED))

    assert loop.process(h.ctx, key) is loop.Outcome.DONE
    assert h.kube.fired
    assert h.ctx.cache.resource(key) is None, "the status response brought the deleted resource back"

    h.kube.calls.clear()
    deliver_writes(h.ctx, h.kube)
    assert loop.process(h.ctx, key) is loop.Outcome.GONE
    assert h.kube.writes() == [], "nothing is written for a resource that is gone"


def test_the_next_reconcile_waits_until_the_informers_delivered_our_writes():
    h = Harness(clock=Clock())
    key = key_of(h.add(FIXED))
    assert loop.process(h.ctx, key) is loop.Outcome.DONE
    unseen = {(w.kind, w.name) for w in h.ctx.expectations.unseen(key, h.ctx.cache)}
    assert {("Service", "scorer"), ("Deployment", "scorer"), ("ModelDeployment", "scorer")} <= unseen

    h.kube.calls.clear()
    assert loop.process(h.ctx, key) is loop.Outcome.WAITING
    assert h.kube.calls == [], "a reconcile on a cache older than our own writes decides nothing"

    deliver_writes(h.ctx, h.kube)
    assert loop.process(h.ctx, key) is loop.Outcome.DONE


def test_writes_the_informers_never_deliver_are_given_up_after_the_timeout():
    clock = Clock()
    h = Harness(clock=clock)
    h.ctx.expectations._clock = clock  # the test's clock for the expectations too
    key = key_of(h.add(FIXED))
    loop.process(h.ctx, key)
    assert h.ctx.expectations.unseen(key, h.ctx.cache)
    clock.now += EXPECTATION_TIMEOUT_SECONDS + 1
    assert h.ctx.expectations.unseen(key, h.ctx.cache) == []


class DeletedDuringReconcile(FakeKube):
    """The resource is deleted while its reconcile is between its status write and its end: the informer
    thread handles the DELETED event (loop.enqueue) in that window."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ctx = None
        self.fired = False

    def patch_status(self, kind, namespace, name, status):
        updated = super().patch_status(kind, namespace, name, status)
        if not self.fired:
            self.fired = True
            gone = self.objects.pop(next(k for k in self.objects if (k[1], k[3]) == (kind, name)))
            loop.enqueue(self.ctx, self.ctx.cache.remove(kind, gone))
        return updated


def series(h: Harness, key) -> list:
    return [s for family in h.ctx.metrics.registry.collect() for s in family.samples
            if s.labels.get("name") == key[2] and s.labels.get("namespace") == key[1]]


def test_a_resource_deleted_mid_reconcile_leaves_no_metric_series():
    kube = DeletedDuringReconcile(local_queues=((NS, "team-a"),))
    h = Harness(kube, clock=Clock())
    kube.ctx = h.ctx
    h.ctx.metrics.observe_loop(h.ctx.queue, h.ctx.cache)
    key = key_of(h.add(FIXED))
    assert h.ctx.queue.get(timeout=0) is None

    assert loop.process(h.ctx, key) is loop.Outcome.DONE  # wrote its phase after the DELETED was handled
    assert kube.fired
    assert series(h, key) == [], "the collector exports only resources the cache holds"
    assert h.ctx.queue.get(timeout=0) == key, "the deletion was handed to a worker"

    assert loop.process(h.ctx, key) is loop.Outcome.GONE
    assert key not in h.ctx.metrics.snapshot()[0] and key not in h.ctx.status_written_at
    assert h.ctx.metrics._phases.get(key) is None  # the series' state itself is dropped


def test_a_failing_handler_is_reported_its_change_enqueued_again_and_the_watch_goes_on():
    source = ListWatch([page(md("a", 10), version="10")],
                       [([event("MODIFIED", md("a", 11)), event("ADDED", md("b", 12))], None)])
    failed = []

    def on_change(change):
        if change.obj["metadata"]["name"] == "a" and change.obj["metadata"]["resourceVersion"] == "11":
            raise KeyError("a bug in the handler")

    cache, recorder, informer = run_informer(
        source, lambda cache, rec: cache.resource(("ModelDeployment", NS, "b")) is not None,
        on_change=on_change, on_handler_error=lambda change, err: failed.append((change, err)))
    [(change, err)] = failed
    assert (change.kind, change.obj["metadata"]["name"], isinstance(err, KeyError)) == ("ModelDeployment", "a", True)
    assert loop.keys_for(change) == [("ModelDeployment", NS, "a")]


def test_the_keys_of_a_failed_change_are_found_without_the_handler():
    owned = {"metadata": {"namespace": NS, "name": "scorer-x", "labels": {OWNER_LABEL: "modeldeployment.scorer"}}}
    assert loop.keys_for(Change("Pod", owned, False)) == [("ModelDeployment", NS, "scorer")]
    assert loop.keys_for(Change("Pod", {"metadata": {"namespace": NS, "name": "stray"}}, False)) == []


class NeverCalled:
    def param_serialize(self, *args, **kwargs):
        raise AssertionError("a refused write reached the API client")


def test_a_write_is_refused_before_it_is_sent_once_the_lease_is_not_current():
    kube = Kube(NeverCalled())
    reasons = iter(["the lease was last renewed 12.0s ago, past the renew deadline of 10s"])
    kube.guard_writes(lambda: next(reasons))
    with pytest.raises(Fenced, match="past the renew deadline"):
        kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": NS}})
    kube.guard_writes(lambda: None)
    kube.fence()
    with pytest.raises(Fenced, match="lost its lease"):
        kube.patch_status("ModelDeployment", NS, "scorer", {})


def test_the_leader_may_write_only_within_the_renew_deadline_of_its_last_renewal(monkeypatch):
    elector = LeaderElector(kubernetes.client.ApiClient(), LeaseSettings(renew_deadline=10), "me",
                            lambda: None, lambda: None)
    assert "never held" in elector.write_refusal()
    now = [1000.0]
    monkeypatch.setattr(leader.time, "monotonic", lambda: now[0])
    elector._lock.renewed_at = 995.0  # as a successful renewal sets it
    assert elector.write_refusal() is None
    now[0] = 1005.5
    assert "past the renew deadline" in elector.write_refusal()


class RecordingClient:
    """Just enough of kubernetes.client.ApiClient for Kube: records each request's path and query."""

    def __init__(self, items_by_pod: dict[str, list[dict]]):
        self.requests: list[tuple[str, dict]] = []
        self.items_by_pod = items_by_pod

    def param_serialize(self, method, path, query_params, header_params, body, auth_settings):
        self.requests.append((path, dict(query_params)))
        return method, path, header_params, body, None

    def call_api(self, method, url, header_params, body, post_params, _request_timeout):
        pod = dict(self.requests[-1][1])["fieldSelector"].rsplit("involvedObject.name=", 1)[1]
        data = json.dumps({"items": self.items_by_pod.get(pod, [])}).encode()
        return type("Response", (), {"status": 200, "read": lambda self: data})()


def test_warning_events_are_read_per_pod_by_field_selector_and_capped():
    client = RecordingClient({"p1": [{"reason": "FailedScheduling"}]})
    found = Kube(client).warning_events(NS, ["p1", "p2", "p3", "p4", "p5"])
    assert found == {"p1": [{"reason": "FailedScheduling"}]}
    selectors = [query["fieldSelector"] for _, query in client.requests]
    assert selectors == [f"type=Warning,involvedObject.kind=Pod,involvedObject.name=p{i}"
                         for i in range(1, WARNING_EVENT_PODS + 1)]


def deliver_as_the_informer(h: Harness) -> None:
    """Each write delivered to the cache and handed to the event handler, as the informer does."""
    for kind, obj, key in h.kube.drain_written():
        change = (h.ctx.cache.remove(kind, {"metadata": {"namespace": key[2], "name": key[3]}}) if obj is None
                  else h.ctx.cache.upsert(kind, obj))
        loop.enqueue(h.ctx, change)


def test_the_echoes_of_a_reconciles_own_writes_do_not_enqueue_it_again():
    h = Harness(clock=Clock())
    key = key_of(h.add(FIXED))
    assert loop.process(h.ctx, key) is loop.Outcome.DONE
    deliver_as_the_informer(h)
    assert h.ctx.queue.stats()[0] == 0, "nothing but our own writes came back: no reconcile"

    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"readyReplicas": 3, "replicas": 3})
    h.kube._written.append(("apps/v1", "Deployment", NS, "scorer"))  # the controller's write
    deliver_as_the_informer(h)
    assert h.ctx.queue.stats()[0] == 1, "a change by someone else enqueues the owner"


def test_a_reconcile_put_off_for_its_writes_is_due_when_the_last_one_arrives():
    h = Harness(clock=Clock())
    key = key_of(h.add(FIXED))
    loop.process(h.ctx, key)
    assert loop.process(h.ctx, key) is loop.Outcome.WAITING
    h.ctx.queue.get(timeout=0)  # the fallback recheck is not due yet
    deliver_as_the_informer(h)
    assert h.ctx.queue.get(timeout=0) == key


def test_a_child_change_that_no_decision_reads_does_not_enqueue_the_owner():
    h = Harness(clock=Clock())
    key = key_of(h.add(FIXED))
    loop.process(h.ctx, key)
    deliver_as_the_informer(h)
    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"replicas": 3, "readyReplicas": 1, "conditions": [
                      {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                       "message": "ReplicaSet scorer-1 is progressing.", "lastUpdateTime": "2026-12-06T09:00:00Z"}]})
    h.kube._written.append(("apps/v1", "Deployment", NS, "scorer"))
    deliver_as_the_informer(h)
    assert h.ctx.queue.stats()[0] == 1, "the counts changed: the owner is reconciled"
    h.ctx.queue.discard(key)

    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"replicas": 3, "readyReplicas": 1, "conditions": [
                      {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                       "message": "ReplicaSet scorer-1 is progressing.", "lastUpdateTime": "2026-12-06T09:00:05Z"}]})
    h.kube._written.append(("apps/v1", "Deployment", NS, "scorer"))
    deliver_as_the_informer(h)
    assert h.ctx.queue.stats()[0] == 0, "only the condition's refresh time moved: nothing to reconcile"

    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"replicas": 3, "readyReplicas": 1, "conditions": [
                      {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                       "message": "ReplicaSet scorer-1 has timed out progressing.",
                       "lastUpdateTime": "2026-12-06T09:10:00Z"}]})
    h.kube._written.append(("apps/v1", "Deployment", NS, "scorer"))
    deliver_as_the_informer(h)
    assert h.ctx.queue.stats()[0] == 1, "a condition that flipped (a canary's deadline) is read: reconciled"


def test_a_resource_created_again_under_its_name_waits_until_its_predecessors_children_are_gone():
    """A TrainingJob deleted and created again before the garbage collector removed its Job: the new one
    must not take the old run's finished Job for its own run 1 (the chaos e2e test caught it Succeeded with
    no Job of its own). It deletes that incarnation's children, waits, then starts its own run."""
    h = Harness()
    first = h.add(training_job("trainer"))
    key = key_of(first)
    assert loop.process(h.ctx, key) is loop.Outcome.DONE
    deliver_writes(h.ctx, h.kube)
    old_job = h.kube.stored("batch/v1", "Job", NS, "trainer-1")
    old_job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    h.ctx.cache.upsert("Job", h.kube.put(old_job))

    h.kube.objects.pop((API_VERSION, "TrainingJob", NS, "trainer"))
    h.ctx.cache.remove("TrainingJob", first)
    again = training_job("trainer")
    again["metadata"]["uid"] = "uid-created-again"
    h.add(again)
    h.kube.calls.clear()
    assert loop.process(h.ctx, key) is loop.Outcome.WAITING
    assert [(c.kind, c.name, c.detail) for c in h.kube.called("delete")] == [
        ("Job", "trainer-1", {"uid": old_job["metadata"]["uid"]})]
    assert not h.kube.called("apply") and not h.kube.called("patch_status"), "nothing done on the old run's Job"

    h.kube.drain_written()  # a finalizer holds the Job, being deleted
    being_deleted = {**old_job, "metadata": {**old_job["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    being_deleted = h.kube.put(being_deleted)
    h.ctx.cache.upsert("Job", being_deleted)
    h.kube.calls.clear()
    assert loop.process(h.ctx, key) is loop.Outcome.WAITING
    assert not h.kube.called("delete"), "asked once"

    h.kube.objects.pop(("batch/v1", "Job", NS, "trainer-1"))
    h.ctx.cache.remove("Job", being_deleted)
    assert loop.process(h.ctx, key) is loop.Outcome.DONE
    new_job = h.kube.stored("batch/v1", "Job", NS, "trainer-1")
    assert [r["uid"] for r in new_job["metadata"]["ownerReferences"]] == ["uid-created-again"]
    assert not (new_job.get("status") or {}).get("conditions"), "a new Job, not the predecessor's"
    status = h.kube.stored(API_VERSION, "TrainingJob", NS, "trainer")["status"]
    assert status["run"] == 1 and status["phase"] != "Succeeded"


def test_a_child_found_by_name_that_a_predecessor_controls_is_not_taken():
    """Not in the cache yet, found by a GET: the reconcile is retried instead of acting on it."""
    h = Harness()
    body = h.add(training_job("trainer"))
    key = key_of(body)
    predecessor_job = {"apiVersion": "batch/v1", "kind": "Job",
                       "metadata": {"name": "trainer-1", "namespace": NS, "labels": {OWNER_LABEL: "trainingjob.trainer"},
                                    "ownerReferences": [{"apiVersion": API_VERSION, "kind": "TrainingJob",
                                                         "name": "trainer", "uid": "uid-gone", "controller": True}]},
                       "spec": {}, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    h.add(predecessor_job, cached=False)
    assert loop.process(h.ctx, key) is loop.Outcome.RETRY
    assert not h.kube.called("apply") and not h.kube.called("patch_status")


def test_only_children_a_deleted_resource_of_the_same_kind_controlled_are_taken_for_its_predecessor_s():
    """A child under the name that nobody controls (made by hand), or that another kind controls (a CronJob's
    Job), is never deleted as a predecessor's."""
    h = Harness()
    body = h.add(training_job("trainer"))
    key = key_of(body)
    labels = {OWNER_LABEL: "trainingjob.trainer"}
    by_hand = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "trainer-9", "namespace": NS, "labels": labels},
               "spec": {}}
    by_cron = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "trainer-cron-1", "namespace": NS, "labels": labels,
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "trainer-cron",
                                                 "uid": "uid-cron", "controller": True}]}, "spec": {}}
    for child in (by_hand, by_cron):
        h.add(child)
    assert incarnations.predecessors_children(h.ctx, key, body["metadata"]["uid"]) == []
    assert not incarnations.waiting_for_predecessor(h.ctx, key, body)
    assert not h.kube.called("delete")
