"""A reconcile's independent writes go out together on the writer pool, in the order that matters: the kinds
other children refer to first; every write of a step completes, then the first error is raised, so that what
succeeded is recorded and nothing half-applied is reported as done."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlplatform.controllers.base import apply_children
from mlplatform.labels import OWNER_LABEL
from mlplatform.render.common import Owner
from mlplatform.runtime import loop

from .fake_kube import FakeKube, deliver_writes, kube_error
from .test_reconcilers import FIXED, NS, Harness, key_of

OWNER = Owner("ModelDeployment", "scorer", NS, uid="uid-1", generation=1)
KEY = ("ModelDeployment", NS, "scorer")


def child(kind: str, name: str = "scorer", api_version: str = "v1") -> dict:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": NS, "labels": {OWNER_LABEL: "modeldeployment.scorer"},
                         "ownerReferences": [{"uid": "uid-1", "controller": True}]},
            "spec": {"n": 1}}


class ThreadSafe(FakeKube):
    """The fake behind a lock, with a hook run (outside the lock) before each apply."""

    def __init__(self, before_apply=lambda obj: None, **kwargs):
        super().__init__(**kwargs)
        self.lock = threading.Lock()
        self.before_apply = before_apply

    def apply(self, obj, field_manager="mlplatform"):
        self.before_apply(obj)
        with self.lock:
            return super().apply(obj, field_manager)

    def delete(self, *args, **kwargs):
        with self.lock:
            return super().delete(*args, **kwargs)


@pytest.fixture
def writers():
    pool = ThreadPoolExecutor(max_workers=8)
    yield pool
    pool.shutdown()


def harness(kube: FakeKube, writers) -> Harness:
    h = Harness(kube)
    h.ctx.writers = writers
    return h


def test_independent_children_are_applied_together(writers):
    together = threading.Barrier(3, timeout=5)  # one after another, the first would wait here alone
    kube = ThreadSafe(before_apply=lambda obj: together.wait())
    h = harness(kube, writers)
    apply_children(h.ctx, KEY, OWNER, [child("Service"), child("Deployment", api_version="apps/v1"),
                                       child("PodDisruptionBudget", api_version="policy/v1")])
    assert sorted(c.kind for c in kube.called("apply")) == ["Deployment", "PodDisruptionBudget", "Service"]


def test_what_others_refer_to_is_applied_before_them(writers):
    order: list[tuple[str, str]] = []
    record = threading.Lock()

    def before_apply(obj):
        with record:
            order.append(("start", obj["kind"]))

    kube = ThreadSafe(before_apply=before_apply)
    original = kube.apply

    def apply(obj, field_manager="mlplatform"):
        result = original(obj, field_manager)
        with record:
            order.append(("end", obj["kind"]))
        return result

    kube.apply = apply
    h = harness(kube, writers)
    apply_children(h.ctx, KEY, OWNER, [child("Deployment", api_version="apps/v1"), child("ConfigMap"),
                                       child("Service")])
    assert order.index(("end", "ConfigMap")) < min(order.index(("start", "Deployment")), order.index(("start", "Service")))


def test_a_failed_child_is_raised_after_the_others_completed_and_they_are_recorded(writers):
    kube = ThreadSafe()
    kube.fail("apply", "Deployment", "scorer", kube_error(500, "boom"))
    h = harness(kube, writers)
    with pytest.raises(Exception, match="boom"):
        apply_children(h.ctx, KEY, OWNER, [child("Service"), child("Deployment", api_version="apps/v1"),
                                           child("PodDisruptionBudget", api_version="policy/v1")])
    assert kube.stored("v1", "Service", NS, "scorer") is not None
    assert kube.stored("policy/v1", "PodDisruptionBudget", NS, "scorer") is not None
    expected = {(w.kind, w.name) for w in h.ctx.expectations.unseen(KEY, h.ctx.cache)}
    assert expected == {("Service", "scorer"), ("PodDisruptionBudget", "scorer")}


def test_a_reconcile_with_a_failed_write_reports_nothing_and_is_retried(writers):
    kube = ThreadSafe(local_queues=((NS, "team-a"),))
    h = harness(kube, writers)
    key = key_of(h.add(FIXED))
    kube.fail("apply", "Deployment", "scorer", kube_error(500, "boom"))
    assert loop.process(h.ctx, key) is loop.Outcome.RETRY
    assert kube.called("patch_status") == [], "a half-applied reconcile writes no status"
    assert kube.stored("v1", "Service", NS, "scorer") is not None, "the other children went out"


def test_the_same_children_with_or_without_the_pool(writers):
    def applied_with(pool) -> dict:
        kube = ThreadSafe(local_queues=((NS, "team-a"),))
        h = harness(kube, pool)
        key = key_of(h.add(FIXED))
        loop.process(h.ctx, key)
        deliver_writes(h.ctx, kube)
        return {k: {f: v for f, v in o.items() if f != "metadata"} for k, o in kube.objects.items()}
    assert applied_with(writers) == applied_with(None)
