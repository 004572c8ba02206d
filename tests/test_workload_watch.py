"""Kueue's Workloads are watched: a change of admission or eviction reconciles the TrainingJob whose Job the
Workload is for, at once (no other event, no resync), and its status shows it. Workloads carry Kueue's job-UID
label, not our owner label: each is mapped to our resource through the Job that owns it."""

from __future__ import annotations

from mlplatform.operator_main import WATCHED, WORKLOADS, on_change, owner_of_workload
from mlplatform.runtime import loop
from mlplatform.runtime.kube import KUEUE_JOB_UID_LABEL

from .fake_kube import FakeKube
from .test_reconcilers import NS, QUEUED, Harness, current

KEY = ("TrainingJob", NS, "trainer")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def workload_of(job: dict, *conditions: dict, name: str = "job-trainer-1-abcde") -> dict:
    """The Workload Kueue makes for a Job: owned by it, labelled with its UID."""
    return {"apiVersion": WORKLOADS.api_version, "kind": "Workload",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1",
                         "labels": {KUEUE_JOB_UID_LABEL: job["metadata"]["uid"]},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "controller": True,
                                              "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}]},
            "status": {"conditions": list(conditions)}}


def condition(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-25T11:00:00Z"}


def queued_run() -> tuple[Harness, Clock, dict]:
    """A queued TrainingJob reconciled, its Job suspended for Kueue and in the cache; the queue emptied."""
    clock = Clock()
    h = Harness(FakeKube(local_queues=((NS, "team-a"),)), clock)
    h.add(QUEUED)
    h.reconcile(QUEUED)
    h.sync()
    h.reconcile(current(h, QUEUED))
    h.sync()
    while h.ctx.queue.get(timeout=0) is not None:
        pass
    return h, clock, h.kube.stored("batch/v1", "Job", NS, "trainer-1")


def deliver(h: Harness, workload: dict, deleted: bool = False) -> None:
    """What the Workload informer does with a watch event: the cache, then the change handler."""
    change = h.ctx.cache.remove("Workload", workload) if deleted else h.ctx.cache.upsert("Workload", workload)
    on_change(h.ctx, WORKLOADS)(change)


def test_workloads_are_watched_by_kueue_s_job_uid_label_where_kueue_is_installed():
    assert WORKLOADS in WATCHED
    assert (WORKLOADS.kind, WORKLOADS.plural, WORKLOADS.label_selector) == ("Workload", "workloads", KUEUE_JOB_UID_LABEL)
    assert WORKLOADS.optional, "without Kueue the kind is not served: the workers must not wait for it"


def test_a_workload_is_mapped_to_the_resource_whose_job_owns_it():
    h, _, job = queued_run()
    assert owner_of_workload(h.ctx.cache, workload_of(job)) == KEY
    others = {**job, "metadata": {**job["metadata"], "name": "someone-elses-job", "uid": "uid-other"}}
    assert owner_of_workload(h.ctx.cache, workload_of(others)) is None  # not a Job in our cache
    earlier = {**job, "metadata": {**job["metadata"], "uid": "uid-of-an-earlier-attempt"}}
    assert owner_of_workload(h.ctx.cache, workload_of(earlier)) is None  # same name, another Job
    assert owner_of_workload(h.ctx.cache, {"metadata": {"name": "w", "namespace": NS}}) is None


def test_an_admission_reaches_the_status_from_the_workload_s_own_event():
    h, clock, job = queued_run()
    pending = workload_of(job, condition("QuotaReserved", "False", "Pending", "insufficient unused quota"))
    h.kube.workloads[job["metadata"]["uid"]] = pending
    deliver(h, pending)
    clock.now += loop.CHILD_EVENT_DELAY_SECONDS
    assert h.ctx.queue.get(timeout=0) == KEY
    loop.process(h.ctx, KEY)
    h.ctx.queue.done(KEY)
    h.sync()
    assert "insufficient unused quota" in {c["type"]: c for c in current(h, QUEUED)["status"]["conditions"]}[
        "Ready"]["message"]

    # Kueue admits: only the Workload changed so far (the Job is unsuspended later, by another controller).
    admitted = workload_of(job, condition("QuotaReserved", "True", "QuotaReserved"),
                           condition("Admitted", "True", "Admitted", "The workload is admitted"))
    admitted["metadata"]["resourceVersion"] = "2"
    h.kube.workloads[job["metadata"]["uid"]] = admitted
    deliver(h, admitted)
    clock.now += loop.CHILD_EVENT_DELAY_SECONDS
    assert h.ctx.queue.get(timeout=0) == KEY
    loop.process(h.ctx, KEY)
    status = h.kube.stored(QUEUED["apiVersion"], "TrainingJob", NS, "trainer")["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Admitted"] == "True"


def test_a_deleted_workload_and_others_workloads_enqueue_as_they_should():
    h, clock, job = queued_run()
    deliver(h, workload_of(job), deleted=True)
    clock.now += loop.CHILD_EVENT_DELAY_SECONDS
    assert h.ctx.queue.get(timeout=0) == KEY
    h.ctx.queue.done(KEY)
    others = {**job, "metadata": {**job["metadata"], "name": "batch-job", "uid": "uid-other"}}
    deliver(h, workload_of(others, name="job-batch-job-xyz"))
    clock.now += loop.CHILD_EVENT_DELAY_SECONDS
    assert h.ctx.queue.get(timeout=0) is None
