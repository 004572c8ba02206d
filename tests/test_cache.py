"""What the watches have seen: the cache, the informers that fill it, and the loop's bookkeeping."""

from __future__ import annotations

import copy
import json
import threading
import time

import pytest

from mlplatform.api import API_VERSION
from mlplatform.controllers.base import owns_spec_field
from mlplatform.labels import LAST_APPLIED_ANNOTATION, OWNER_LABEL
from mlplatform.runtime.cache import Cache, Packed, owner_key_of, trim
from mlplatform.runtime.health import WorkerMonitor
from mlplatform.runtime.informer import Informer, Watched
from mlplatform.runtime.kube import FIELD_MANAGER, HANDOFF_FIELD_MANAGER, KubeError, WatchExpired
from mlplatform.runtime.workqueue import WorkQueue

MANAGERS = (FIELD_MANAGER, HANDOFF_FIELD_MANAGER)
NS = "team"
SCORER = ("ModelDeployment", NS, "scorer")


def obj(kind: str, name: str, version: int, owner: str | None = None, api_version: str = "v1", **rest) -> dict:
    meta = {"name": name, "namespace": NS, "resourceVersion": str(version), "uid": f"uid-{name}"}
    if owner:
        meta["labels"] = {OWNER_LABEL: owner}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **rest}


def md(name: str, version: int) -> dict:
    return obj("ModelDeployment", name, version, api_version=API_VERSION, spec={"replicas": version})


def names(objects: list[dict]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


# --- Cache --------------------------------------------------------------------------------------

def test_replace_drops_what_the_listing_no_longer_has_and_reports_only_differences():
    cache = Cache(MANAGERS)
    for body in (md("kept", 1), md("changed", 1), md("ghost", 1)):
        cache.upsert("ModelDeployment", body)

    changes = cache.replace("ModelDeployment", [md("kept", 1), md("changed", 2), md("new", 1)])

    assert sorted((c.obj["metadata"]["name"], c.deleted) for c in changes) == [
        ("changed", False), ("ghost", True), ("new", False)]
    assert names(cache.resources("ModelDeployment")) == ["changed", "kept", "new"]
    assert cache.resource(("ModelDeployment", NS, "changed"))["spec"] == {"replicas": 2}
    assert cache.resource(("ModelDeployment", NS, "ghost")) is None
    assert cache.replace("ModelDeployment", [md("kept", 1), md("changed", 2), md("new", 1)]) == []


def test_replace_also_drops_a_vanished_child_from_its_owner_s_index():
    cache = Cache(MANAGERS)
    cache.upsert("Service", obj("Service", "scorer", 1, "modeldeployment.scorer"))
    cache.upsert("Service", obj("Service", "scorer-old", 1, "modeldeployment.scorer"))
    [change] = cache.replace("Service", [obj("Service", "scorer", 1, "modeldeployment.scorer")])
    assert (change.obj["metadata"]["name"], change.deleted) == ("scorer-old", True)
    assert names(cache.children(SCORER, "Service")) == ["scorer"]


def test_child_controllers_are_read_without_decoding_the_children(monkeypatch):
    cache = Cache(MANAGERS)
    ref = {"apiVersion": API_VERSION, "kind": "ModelDeployment", "name": "scorer", "uid": "uid-1", "controller": True}
    shared = {**ref, "uid": "uid-cache-holder", "controller": False}
    service = obj("Service", "scorer", 1, "modeldeployment.scorer")
    service["metadata"]["ownerReferences"] = [shared, ref]
    cache.upsert("Service", service)
    cache.upsert("Service", obj("Service", "scorer-bare", 1, "modeldeployment.scorer"))
    monkeypatch.setattr(Packed, "open", lambda self: pytest.fail("a child was decoded"))
    assert cache.child_controllers(SCORER, "Service") == {
        "scorer": (API_VERSION, "ModelDeployment", "uid-1"), "scorer-bare": None}
    assert cache.child_controllers(SCORER, "Deployment") == {}


def test_upsert_ignores_an_older_version():
    cache = Cache(MANAGERS)
    assert cache.upsert("ModelDeployment", md("scorer", 7)) is not None
    assert cache.upsert("ModelDeployment", md("scorer", 5)) is None
    assert cache.resource(SCORER)["metadata"]["resourceVersion"] == "7"
    change = cache.upsert("ModelDeployment", md("scorer", 8))
    assert change is not None and change.obj["spec"] == {"replicas": 8} and not change.deleted
    assert cache.resource(SCORER)["metadata"]["resourceVersion"] == "8"


def managed(manager: str, *spec_fields: str, operation: str = "Apply") -> dict:
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1", "time": "2026-11-25T12:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                         "f:spec": {f"f:{f}": {"f:nested": {}} for f in spec_fields}}}


DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "scorer", "namespace": NS, "resourceVersion": "3", "uid": "u", "generation": 2,
                 "labels": {OWNER_LABEL: "modeldeployment.scorer"},
                 "annotations": {LAST_APPLIED_ANNOTATION: "{\"huge\": true}", "team": "risk"},
                 "managedFields": [managed(FIELD_MANAGER, "template", "selector"),
                                   managed(HANDOFF_FIELD_MANAGER, "replicas"),
                                   managed("kube-controller-manager", "replicas", operation="Update")],
                 "finalizers": ["x"]},
    "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "server"}]}}},
    "status": {"readyReplicas": 4},
}


def test_trim_keeps_only_our_managers_top_level_spec_fields():
    trimmed = trim("Deployment", DEPLOYMENT, MANAGERS)
    assert trimmed["metadata"]["managedFields"] == [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}, "f:selector": {}}}},
        {"manager": HANDOFF_FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]
    assert owns_spec_field(trimmed, "template") and not owns_spec_field(trimmed, "replicas")
    assert owns_spec_field(trim("Job", {**DEPLOYMENT, "kind": "Job"}, MANAGERS), "selector")
    assert trimmed["metadata"]["annotations"] == {"team": "risk"}
    assert "finalizers" not in trimmed["metadata"]
    assert trimmed["spec"] == DEPLOYMENT["spec"] and trimmed["status"] == DEPLOYMENT["status"]
    assert len(DEPLOYMENT["metadata"]["managedFields"]) == 3
    assert LAST_APPLIED_ANNOTATION in DEPLOYMENT["metadata"]["annotations"]


def test_trim_drops_managed_fields_of_kinds_no_decision_reads_them_for():
    service = {**copy.deepcopy(DEPLOYMENT), "kind": "Service"}
    assert "managedFields" not in trim("Service", service, MANAGERS)["metadata"]


def test_trim_keeps_pods_without_their_spec():
    pod = obj("Pod", "scorer-abc", 9, "modeldeployment.scorer",
              spec={"containers": [{"name": "server", "env": [{"name": "SECRET", "value": "x"}]}]},
              status={"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    trimmed = trim("Pod", pod, MANAGERS)
    assert "spec" not in trimmed
    assert trimmed["status"] == pod["status"]
    assert trimmed["metadata"]["labels"] == {OWNER_LABEL: "modeldeployment.scorer"}
    assert trim("Pod", obj("Pod", "bare", 1), MANAGERS)["status"] == {}


def test_trim_keeps_of_a_pod_status_what_the_pod_checks_read():
    waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    last = {"terminated": {"exitCode": 3, "reason": "Error", "message": '{"auc": 0.9}'}}
    status = {"phase": "Running", "hostIP": "10.0.0.1", "podIPs": [{"ip": "10.244.0.9"}], "qosClass": "Burstable",
              "startTime": "2026-11-28T10:00:00Z",
              "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
              "containerStatuses": [{"name": "server", "ready": False, "restartCount": 2, "state": waiting,
                                     "lastState": last, "image": "x:1", "imageID": "sha256:abc",
                                     "containerID": "kwok://1", "volumeMounts": [{"name": "m", "mountPath": "/m"}]}],
              "initContainerStatuses": [{"name": "storage-initializer", "ready": True, "restartCount": 0,
                                         "state": {"terminated": {"exitCode": 0}}, "image": "y:1"}]}
    kept = trim("Pod", obj("Pod", "p", 1, "modeldeployment.scorer", status=status), MANAGERS)["status"]
    assert kept == {"phase": "Running", "startTime": "2026-11-28T10:00:00Z", "conditions": status["conditions"],
                    "containerStatuses": [{"name": "server", "ready": False, "restartCount": 2, "state": waiting,
                                           "lastState": last}],
                    "initContainerStatuses": [{"name": "storage-initializer", "ready": True, "restartCount": 0,
                                               "state": {"terminated": {"exitCode": 0}}}]}


def test_cached_custom_resources_share_their_keys_and_short_strings():
    """Two resources decoded from the API (json.loads makes new str objects each time) share them once cached."""
    cache = Cache(MANAGERS)
    for name in ("a", "b"):
        text = json.dumps(obj("ModelDeployment", name, 1, "team.x", api_version=API_VERSION, spec={"replicas": 1}))
        cache.upsert("ModelDeployment", json.loads(text))
    first, second = (cache.resource(("ModelDeployment", NS, name)) for name in ("a", "b"))
    assert next(iter(first["metadata"]["labels"])) is next(iter(second["metadata"]["labels"]))
    assert first["metadata"]["labels"][OWNER_LABEL] is second["metadata"]["labels"][OWNER_LABEL]


def test_a_child_is_kept_packed_and_every_read_is_a_fresh_copy():
    cache = Cache(MANAGERS)
    cache.upsert("Deployment", DEPLOYMENT)
    read = cache.child(SCORER, "Deployment", "scorer")
    assert read == trim("Deployment", DEPLOYMENT, MANAGERS)
    read["spec"]["replicas"] = 99  # a reconcile changing what it read changes nothing cached
    assert cache.child(SCORER, "Deployment", "scorer")["spec"]["replicas"] == 4
    assert cache.resources("Deployment") == [trim("Deployment", DEPLOYMENT, MANAGERS)]


def test_a_relisted_child_s_change_carries_its_head_only():
    cache = Cache(MANAGERS)
    [change] = cache.replace("Deployment", [DEPLOYMENT])
    assert change.obj == {k: trim("Deployment", DEPLOYMENT, MANAGERS)[k] for k in ("apiVersion", "kind", "metadata")}
    assert cache.child(SCORER, "Deployment", "scorer")["spec"]["replicas"] == 4


def test_children_are_indexed_by_the_owner_label():
    cache = Cache(MANAGERS)
    cache.upsert("Deployment", DEPLOYMENT)
    cache.upsert("Pod", obj("Pod", "scorer-abc", 4, "modeldeployment.scorer", status={}))
    cache.upsert("Pod", obj("Pod", "other-abc", 4, "modeldeployment.other", status={}))
    cache.upsert("Pod", obj("Pod", "unlabelled", 4, status={}))
    cache.upsert("Pod", obj("Pod", "foreign", 4, "somethingelse.scorer", status={}))
    cache.upsert("ModelDeployment", {**md("scorer", 1), "metadata": {**md("scorer", 1)["metadata"],
                                                                    "labels": {OWNER_LABEL: "modeldeployment.scorer"}}})

    assert names(cache.children(SCORER, "Pod")) == ["scorer-abc"]
    assert cache.child(SCORER, "Deployment", "scorer")["spec"]["replicas"] == 4
    assert cache.children(SCORER, "ModelDeployment") == []
    assert cache.child(SCORER, "Deployment", "absent") is None

    change = cache.remove("Pod", obj("Pod", "scorer-abc", 5, "modeldeployment.scorer"))
    assert change.deleted and change.obj["metadata"]["resourceVersion"] == "4"
    assert cache.children(SCORER, "Pod") == []
    assert cache.counts() == {"Deployment": 1, "Pod": 3, "ModelDeployment": 1}


@pytest.mark.parametrize("label,key", [
    ("modeldeployment.scorer", ("ModelDeployment", NS, "scorer")),
    ("trainingjob.fraud.v2", ("TrainingJob", NS, "fraud.v2")),
    ("featureview.driver-stats", ("FeatureView", NS, "driver-stats")),
    ("deployment.scorer", None),
    ("scorer", None),
    (None, None),
])
def test_owner_key_of(label, key):
    assert owner_key_of(obj("Pod", "p", 1, label)) == key


# --- Informer -----------------------------------------------------------------------------------

class ListWatch:
    """list_page and watch as kube.Kube has them: pages served in order, one script per watch call
    (events, then optionally an exception); with no script left a watch ends quietly, as on a server timeout."""

    def __init__(self, pages: list[dict], watches: list[tuple[list[dict], Exception | None]]):
        self.pages = list(pages)
        self.scripts = list(watches)
        self.list_tokens: list[str | None] = []
        self.watched_from: list[str] = []

    def list_page(self, api_version, plural, namespace, label_selector, continue_token, limit):
        self.list_tokens.append(continue_token)
        return self.pages.pop(0)

    def watch(self, api_version, plural, namespace, label_selector, resource_version, timeout_seconds):
        self.watched_from.append(resource_version)
        if not self.scripts:
            time.sleep(0.01)
            return
        events, error = self.scripts.pop(0)
        yield from events
        if error is not None:
            raise error


def page(*items: dict, version: str, token: str | None = None) -> dict:
    metadata = {"resourceVersion": version, **({"continue": token} if token else {})}
    return {"metadata": metadata, "items": [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")}
                                            for i in items]}


def event(type_: str, body: dict) -> dict:
    return {"type": type_, "object": {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}}


def bookmark(version: str) -> dict:
    return {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": version}}}


class Recorder:
    def __init__(self):
        self.changes = []
        self.relists = []

    def on_change(self, change):
        self.changes.append((change.obj["metadata"]["name"], change.deleted))

    def on_relist(self, kind, reason):
        self.relists.append((kind, reason))


def run_informer(source: ListWatch, until, timeout: float = 3.0, on_change=None,
                 on_handler_error=lambda change, err: None) -> tuple[Cache, Recorder, Informer]:
    cache, recorder = Cache(MANAGERS), Recorder()

    def handle(change):
        recorder.on_change(change)
        if on_change is not None:
            on_change(change)

    informer = Informer(source, cache, Watched(API_VERSION, "ModelDeployment", "modeldeployments"), None,
                        handle, relist_seconds=3600, on_relist=recorder.on_relist, on_handler_error=on_handler_error)
    informer.start()
    try:
        deadline = time.monotonic() + timeout
        while not until(cache, recorder) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert until(cache, recorder), (recorder.changes, recorder.relists, source.watched_from)
    finally:
        informer.stop()
        informer.thread.join(timeout=2)
    assert not informer.thread.is_alive()
    return cache, recorder, informer


def test_the_initial_listing_fills_the_cache_then_sets_synced():
    source = ListWatch([page(md("a", 10), version="20", token="next"), page(md("b", 11), version="21")], [])
    cache, recorder, informer = run_informer(source, lambda cache, rec: len(source.watched_from) >= 1)
    assert informer.synced.is_set()
    assert source.list_tokens == [None, "next"]
    assert source.watched_from[0] == "21"
    assert names(cache.resources("ModelDeployment")) == ["a", "b"]
    assert cache.resource(("ModelDeployment", NS, "a"))["kind"] == "ModelDeployment"
    assert sorted(recorder.changes) == [("a", False), ("b", False)]
    assert recorder.relists[0] == ("ModelDeployment", "initial")


def test_synced_stays_unset_until_the_first_listing_succeeds():
    entered, release = threading.Event(), threading.Event()

    class Slow(ListWatch):
        def list_page(self, *args):
            entered.set()
            release.wait(2)
            return super().list_page(*args)

    source = Slow([page(md("a", 1), version="5")], [])
    cache, recorder = Cache(MANAGERS), Recorder()
    informer = Informer(source, cache, Watched(API_VERSION, "ModelDeployment", "modeldeployments"), None,
                        recorder.on_change, relist_seconds=3600)
    informer.start()
    try:
        assert entered.wait(2)
        assert not informer.synced.is_set()
        release.set()
        assert informer.synced.wait(2)
    finally:
        informer.stop()
        informer.thread.join(timeout=2)


def test_an_expired_watch_relists_and_drops_what_was_deleted_in_the_gap():
    source = ListWatch(
        [page(md("a", 10), md("ghost", 11), version="12"), page(md("a", 13), version="30")],
        [([event("MODIFIED", md("a", 13)), bookmark("25")], WatchExpired("too old resource version: 12 (25)"))])
    cache, recorder, _ = run_informer(
        source, lambda cache, rec: len(rec.relists) == 2 and len(source.watched_from) >= 2)
    assert recorder.relists == [("ModelDeployment", "initial"), ("ModelDeployment", "expired")]
    assert ("ghost", True) in recorder.changes
    assert recorder.changes.count(("a", False)) == 2  # the initial listing and the watch; the relist saw no change
    assert names(cache.resources("ModelDeployment")) == ["a"]
    assert source.watched_from[:2] == ["12", "30"]


def test_watch_events_update_the_cache_and_a_dropped_watch_resumes_from_the_last_version():
    source = ListWatch(
        [page(md("a", 10), version="10")],
        [([event("ADDED", md("b", 11)), event("DELETED", md("a", 12)), bookmark("15")],
          ConnectionResetError("connection reset by peer"))])
    cache, recorder, _ = run_informer(source, lambda cache, rec: len(source.watched_from) >= 2)
    assert recorder.changes == [("a", False), ("b", False), ("a", True)]
    assert names(cache.resources("ModelDeployment")) == ["b"]
    assert source.watched_from[:2] == ["10", "15"]
    assert recorder.relists == [("ModelDeployment", "initial")]


# --- the loop's bookkeeping ---------------------------------------------------------------------

class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_work_queue_stats_count_waiting_keys_and_the_longest_overdue_wait():
    clock = Clock()
    queue = WorkQueue(clock)
    assert queue.stats() == (0, 0.0)
    queue.add("due")
    queue.add("later", delay=10)
    clock.now += 3
    assert queue.stats() == (2, 3.0)
    assert queue.get(timeout=0) == "due"
    assert queue.stats() == (1, 0.0)
    clock.now += 9
    assert queue.stats() == (1, 2.0)
    queue.discard("later")
    assert queue.stats() == (0, 0.0)


def test_worker_monitor_reports_workers_stuck_past_the_deadline():
    clock = Clock(0.0)
    monitor = WorkerMonitor(stuck_after_seconds=60, clock=clock)
    monitor.started("worker-1")
    clock.now = 50
    monitor.started("worker-0")
    clock.now = 60
    assert monitor.stuck() == []
    clock.now = 100
    assert monitor.stuck() == ["worker-1 busy for 100s"]
    clock.now = 111
    assert monitor.stuck() == ["worker-0 busy for 61s", "worker-1 busy for 111s"]
    monitor.finished("worker-1")
    monitor.started("worker-0")
    assert monitor.stuck() == []


@pytest.mark.parametrize("optional", [True, False])
def test_a_kind_not_served_counts_as_synced_only_when_optional(optional):
    """HTTPRoutes without the Gateway API CRDs: an optional kind's informer reports synced (nothing of it exists)
    and lists again later; a required kind keeps the workers waiting."""
    class NotServed(ListWatch):
        def list_page(self, *args):
            self.list_tokens.append(None)
            raise KubeError(404, "not served", "list httproutes")

    source = NotServed([], [])
    informer = Informer(source, Cache(MANAGERS), Watched("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes",
                                                         optional=optional), None, lambda change: None,
                        relist_seconds=3600)
    informer.start()
    try:
        assert informer.synced.wait(1.5) is optional
        assert source.list_tokens  # it did try
    finally:
        informer.stop()
        informer.thread.join(timeout=2)
    assert not informer.thread.is_alive()
