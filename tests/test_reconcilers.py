"""Reconcilers against a fake Kube: input objects -> applies, deletes, hand-overs, status written, events posted."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest

from mlplatform.api import API_VERSION
from mlplatform.config import OperatorConfig
from mlplatform.controllers import RECONCILERS
from mlplatform.controllers.base import PROGRESS_WRITE_INTERVAL_SECONDS, InvalidSpec, owner_of, typed_spec, with_intent_hash
from mlplatform.controllers.modeldeployment import dependents
from mlplatform.labels import OWNER_LABEL
from mlplatform.render.common import RenderError, labels
from mlplatform.render.featureview import materialization_job_name, materialization_spec_hash
from mlplatform.render.model_cache import cache_claim_name
from mlplatform.render.modeldeployment import render_model_deployment
from mlplatform.render.trainingjob import RUN_LABEL, earlier_run_spec_hash, render_training_job, run_spec_hash
from mlplatform.runtime import loop
from mlplatform.runtime.cache import Change
from mlplatform.runtime.kube import Kube, KubeError

from .conftest import load_example
from .fake_kube import FakeKube, deliver_writes, kube_error, make_context, namespace_terminating, sync

NS = "team"
CONFIG = OperatorConfig()
ABSENT = object()
AUTOSCALING = {"minReplicas": 2, "maxReplicas": 5, "targets": {"cpuUtilization": 70}}


# --- input objects ------------------------------------------------------------------------------

def resource(kind: str, name: str, spec: dict, status: dict | None = None, generation: int = 1) -> dict:
    body = {"apiVersion": API_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{kind.lower()}-{name}", "generation": generation},
            "spec": spec}
    if status:
        body["status"] = status
    return body


def model_deployment(name: str = "scorer", status: dict | None = None, **spec) -> dict:
    defaults = {"model": {"uri": "s3://models/churn/v3/", "format": "sklearn"}, "runtime": {"preset": "sklearn"}}
    return resource("ModelDeployment", name, {**defaults, **spec}, status)


def training_job(name: str = "trainer", status: dict | None = None, generation: int = 1, **spec) -> dict:
    defaults = {"image": "ghcr.io/acme/train:1", "command": ["python", "train.py"],
                "output": {"uri": "s3://models/trainer/"}}
    return resource("TrainingJob", name, {**defaults, **spec}, status, generation)


def feature_view(status: dict | None = None) -> dict:
    doc = load_example("featureview-driver-stats.yaml")
    return resource("FeatureView", doc["metadata"]["name"], doc["spec"], status)


def cond(type_: str, status: str, reason: str) -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": "", "observedGeneration": 1,
            "lastTransitionTime": "2026-11-25T11:00:00Z"}


RUNNING_CONDITIONS = [cond("Ready", "False", "WorkersRunning"), cond("Stalled", "False", "NotStalled"),
                      cond("Running", "True", "WorkersRunning"), cond("Succeeded", "False", "Running"),
                      cond("Failed", "False", "NotFailed")]
STARTING_CONDITIONS = [cond("Ready", "False", "WorkersStarting"), cond("Stalled", "False", "NotStalled"),
                       cond("Running", "False", "Pending"), cond("Succeeded", "False", "Pending"),
                       cond("Failed", "False", "NotFailed")]


def run_status(body: dict, run: int = 1, phase: str = "Running", conditions: list[dict] | None = None) -> dict:
    """The status a TrainingJob has while `run` of its current spec is in `phase`."""
    status = {"run": run, "runSpecHash": run_spec_hash(typed_spec(body)), "phase": phase,
              "runs": [{"run": run, "generation": 1, "job": f"{body['metadata']['name']}-{run}", "phase": phase}]}
    if conditions:
        status["conditions"] = conditions
    return status


def with_status(obj: dict, status: dict) -> dict:
    return {**copy.deepcopy(obj), "status": status}


def applied(body: dict, kind: str, name: str | None = None, *, uri: str | None = None, run: int = 1,
            job_exists: bool = False) -> dict:
    """A child exactly as our last apply of the current spec left it in the API server."""
    owner, spec = owner_of(body["kind"], body), typed_spec(body)
    if body["kind"] == "ModelDeployment":
        objects = render_model_deployment(owner, spec, CONFIG, uri or spec.model.uri).objects
    else:
        objects = render_training_job(owner, spec, CONFIG, run, job_exists=job_exists).objects
    obj = next(o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"]))
    return FakeKube().apply(with_intent_hash(obj))


def taken_over(obj: dict, manager: str, **spec) -> dict:
    """obj after another client (the HPA, Kueue) changed spec fields, which become that client's."""
    obj = copy.deepcopy(obj)
    obj["spec"].update(spec)
    taken = {f"f:{k}" for k in spec}
    entries = [{**e, "fieldsV1": {"f:spec": {k: v for k, v in e["fieldsV1"]["f:spec"].items() if k not in taken}}}
               for e in obj["metadata"]["managedFields"]]
    obj["metadata"]["managedFields"] = entries + [
        {"manager": manager, "operation": "Update", "fieldsV1": {"f:spec": {k: {} for k in taken}}}]
    return obj


def job_condition(type_: str, reason: str) -> dict:
    return {"type": type_, "status": "True", "reason": reason, "message": f"Job {reason}",
            "lastTransitionTime": "2026-11-25T11:30:00Z"}


def pod(owner: dict, component: str, name: str, run: int | None = None, **status) -> dict:
    pod_labels = labels(owner_of(owner["kind"], owner), component)
    if run is not None:
        pod_labels[RUN_LABEL] = str(run)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": pod_labels},
            "spec": {"containers": [{"name": "server", "image": "x"}]}, "status": status}


def crash_looping(owner: dict, name: str) -> dict:
    return pod(owner, "predictor", name, phase="Running", containerStatuses=[
        {"name": "server", "restartCount": 4,
         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m"}}}])


def not_ours(name: str, owner_label: str) -> dict:
    """Labelled as a child but controlled by something else: never pruned."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS, "labels": {OWNER_LABEL: owner_label},
                         "ownerReferences": [{"uid": "someone-else", "controller": True}]}, "data": {}}


# --- harness ------------------------------------------------------------------------------------

def key_of(body: dict) -> tuple[str, str, str]:
    return body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]


class Harness:
    def __init__(self, kube: FakeKube | None = None, clock=None):
        self.kube = kube or FakeKube(local_queues=((NS, "team-a"),))
        self.ctx = make_context(self.kube, clock)

    def add(self, obj: dict, cached: bool = True) -> dict:
        stored = self.kube.put(obj)
        if cached:
            self.ctx.cache.upsert(stored["kind"], stored)
        return stored

    def reconcile(self, body: dict) -> None:
        """One reconcile, then what the informers deliver of its writes."""
        key = key_of(body)
        RECONCILERS[key[0]](self.ctx.reconciling(key), key, self.ctx.cache.resource(key))
        deliver_writes(self.ctx, self.kube)

    def sync(self) -> None:
        sync(self.ctx, self.kube)

    def replace(self, body: dict) -> None:
        """The resource edited by its user: a new spec and generation, in the API and (by the watch) the cache."""
        stored = self.kube.stored(body["apiVersion"], body["kind"], NS, body["metadata"]["name"])
        edited = {**stored, "spec": body["spec"], "metadata": {**stored["metadata"], **body["metadata"]}}
        self.ctx.cache.upsert(body["kind"], self.kube.put(edited))


def at(obj: Any, path: str | tuple) -> Any:
    for part in (path,) if isinstance(path, str) else path:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return ABSENT
    return obj


def names(kube: FakeKube, method: str) -> list[tuple[str, str]]:
    return [(c.kind, c.name) for c in kube.called(method)]


# --- table --------------------------------------------------------------------------------------

@dataclass
class Row:
    id: str
    resource: dict
    cached: list[dict] = field(default_factory=list)  # in the API server and in the cache
    api_only: list[dict] = field(default_factory=list)  # in the API server, not (yet) in the cache
    kueue_installed: bool = True
    pod_events: dict[str, list[dict]] = field(default_factory=dict)
    gets: list[tuple[str, str]] = field(default_factory=list)
    applies: list[tuple[str, str]] = field(default_factory=list)
    applied: dict[tuple[str, str], dict] = field(default_factory=dict)  # (kind, name) -> {path: value}
    deletes: list[tuple[str, str]] = field(default_factory=list)
    hand_overs: list[tuple[str, str, dict, bool]] = field(default_factory=list)
    phase: str | None = None  # None: no status written
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)  # type -> (status, reason)
    status: dict = field(default_factory=dict)  # path -> value
    events: list[tuple[str, str]] = field(default_factory=list)
    stored: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (apiVersion, kind, name) -> {path: value}


SCORER = model_deployment(autoscaling=AUTOSCALING)
FIXED = model_deployment(replicas=3)
FROM_TRAINING = model_deployment(model={"fromTrainingJob": "trainer", "format": "sklearn"}, replicas=2)
PVC_MODEL = model_deployment(model={"uri": "pvc://models-claim/churn", "format": "sklearn"}, replicas=1)
DEPLOYMENT_STARTING = {"replicas": 3, "readyReplicas": 0, "updatedReplicas": 3, "observedGeneration": 1}

MODEL_DEPLOYMENT_ROWS = [
    Row("new, autoscaled: created at minReplicas without force",
        resource=SCORER,
        gets=[("Deployment", "scorer")],
        applies=[("Service", "scorer"), ("Deployment", "scorer"), ("HorizontalPodAutoscaler", "scorer"),
                 ("PodDisruptionBudget", "scorer")],
        applied={("Deployment", "scorer"): {("spec", "replicas"): ABSENT},
                 ("HorizontalPodAutoscaler", "scorer"): {("spec", "minReplicas"): 2}},
        hand_overs=[("Deployment", "scorer", {"replicas": 2}, False)],
        phase="Progressing",
        conditions={"Ready": ("False", "RollingOut"), "ModelResolved": ("True", "ModelUri"),
                    "FeaturesReady": ("True", "NoFeatures")},
        status={"desiredReplicas": 2, "url": "http://scorer.team.svc.cluster.local"},
        stored={("apps/v1", "Deployment", "scorer"): {("spec", "replicas"): 2}}),
    Row("new, fixed size",
        resource=FIXED,
        applies=[("Service", "scorer"), ("Deployment", "scorer"), ("PodDisruptionBudget", "scorer")],
        applied={("Deployment", "scorer"): {("spec", "replicas"): 3}},
        phase="Progressing",
        conditions={"Ready": ("False", "RollingOut")},
        status={"replicaSummary": "0/3"}),
    Row("autoscaled, Deployment in the API but not in the cache, scaled to 5 by the HPA: its size stays",
        resource=SCORER,
        api_only=[taken_over(applied(SCORER, "Deployment"), "kube-controller-manager", replicas=5)],
        gets=[("Deployment", "scorer")],
        applies=[("Service", "scorer"), ("HorizontalPodAutoscaler", "scorer"), ("PodDisruptionBudget", "scorer")],
        phase="Progressing",
        conditions={"Ready": ("False", "RollingOut")},
        stored={("apps/v1", "Deployment", "scorer"): {("spec", "replicas"): 5}}),
    Row("switching from a fixed size to autoscaling keeps the current size",
        resource=SCORER,
        cached=[applied(FIXED, "Deployment")],
        applies=[("Service", "scorer"), ("Deployment", "scorer"), ("HorizontalPodAutoscaler", "scorer"),
                 ("PodDisruptionBudget", "scorer")],
        applied={("Deployment", "scorer"): {("spec", "replicas"): ABSENT}},
        hand_overs=[("Deployment", "scorer", {"replicas": 3}, True)],
        phase="Progressing",
        stored={("apps/v1", "Deployment", "scorer"): {("spec", "replicas"): 3}}),
    Row("suspended: scaled to zero, no budget, no hand-over",
        resource=model_deployment(autoscaling=AUTOSCALING, suspend=True),
        applies=[("Service", "scorer"), ("Deployment", "scorer")],
        applied={("Deployment", "scorer"): {("spec", "replicas"): 0}},
        phase="Suspended",
        conditions={"Ready": ("True", "Suspended"), "Stalled": ("False", "NotStalled")},
        events=[("Normal", "Suspended")]),
    Row("fromTrainingJob that does not exist yet: only the Service",
        resource=FROM_TRAINING,
        applies=[("Service", "scorer")],
        phase="WaitingForTrainingJob",
        conditions={"Ready": ("False", "WaitingForTrainingJob"), "ModelResolved": ("False", "WaitingForTrainingJob"),
                    "Reconciling": ("True", "WaitingForTrainingJob")},
        status={"modelUri": ABSENT}),
    Row("fromTrainingJob whose run 2 succeeded: deploys that run's artifact",
        resource=FROM_TRAINING,
        cached=[training_job(status={"run": 2, "phase": "Succeeded", "artifactUri": "s3://models/trainer/run-2/",
                                     "artifactRun": 2})],
        applies=[("Service", "scorer"), ("Deployment", "scorer"), ("PodDisruptionBudget", "scorer")],
        applied={("Deployment", "scorer"): {
            ("spec", "template", "metadata", "annotations", "mlplatform.dev/model-uri"): "s3://models/trainer/run-2/"}},
        phase="Progressing",
        conditions={"ModelResolved": ("True", "TrainingJobSucceeded")},
        status={"modelUri": "s3://models/trainer/run-2/", "trainingJobRun": 2}),
    Row("a child no longer rendered is pruned; one controlled by something else is not",
        resource=model_deployment(replicas=1),
        cached=[applied(FIXED, "PodDisruptionBudget"), not_ours("scorer-notes", "modeldeployment.scorer")],
        applies=[("Service", "scorer"), ("Deployment", "scorer")],
        deletes=[("PodDisruptionBudget", "scorer")],
        phase="Progressing",
        stored={("v1", "ConfigMap", "scorer-notes"): {("metadata", "name"): "scorer-notes"}}),
    Row("converged children, a crash-looping pod: one Warning, nothing applied",
        resource=FIXED,
        cached=[applied(FIXED, "Service"), with_status(applied(FIXED, "Deployment"), DEPLOYMENT_STARTING),
                applied(FIXED, "PodDisruptionBudget"), crash_looping(FIXED, "scorer-7d9f-abcde")],
        phase="Progressing",
        conditions={"Ready": ("False", "CrashLoopBackOff"), "Reconciling": ("True", "CrashLoopBackOff")},
        events=[("Warning", "CrashLoopBackOff")]),
    Row("a pending pod its status does not explain: the reason comes from its Warning events",
        resource=FIXED,
        cached=[applied(FIXED, "Service"), with_status(applied(FIXED, "Deployment"), DEPLOYMENT_STARTING),
                applied(FIXED, "PodDisruptionBudget"), pod(FIXED, "predictor", "scorer-7d9f-fghij", phase="Pending")],
        pod_events={"scorer-7d9f-fghij": [{"reason": "FailedMount", "message": 'secret "s3-creds" not found',
                                           "lastTimestamp": "2026-11-25T11:59:00Z"}]},
        phase="Progressing",
        conditions={"Ready": ("False", "FailedMount")},
        events=[("Warning", "FailedMount")]),
    Row("a pvc:// model whose claim does not exist",
        resource=PVC_MODEL,
        cached=[applied(PVC_MODEL, "Service"),
                with_status(applied(PVC_MODEL, "Deployment"),
                            {**DEPLOYMENT_STARTING, "replicas": 1, "updatedReplicas": 1})],
        phase="Progressing",
        conditions={"Ready": ("False", "ClaimNotFound")},
        events=[("Warning", "ClaimNotFound")]),
    Row("a GPU type the configuration does not know: Stalled, nothing applied or pruned",
        resource=model_deployment(replicas=1, resources={"gpu": {"count": 1, "type": "nvidia-tpu"}}),
        cached=[applied(FIXED, "Service")],
        phase="Stalled",
        conditions={"Ready": ("False", "InvalidSpec"), "Stalled": ("True", "InvalidSpec"),
                    "Reconciling": ("False", "Reconciled")},
        events=[("Warning", "InvalidSpec")]),
]

TRAINER = training_job()
QUEUED = training_job(queueName="team-a")
DISTRIBUTED = training_job(workers=2, distribution={"framework": "pytorch"})
RETRAINED = training_job(image="ghcr.io/acme/train:2")

TRAINING_JOB_ROWS = [
    Row("new run",
        resource=TRAINER,
        gets=[("Job", "trainer-1")],
        applies=[("Job", "trainer-1")],
        applied={("Job", "trainer-1"): {("spec", "suspend"): False, ("metadata", "labels", RUN_LABEL): "1"}},
        phase="Pending",
        conditions={"Ready": ("False", "WorkersStarting"), "Running": ("False", "Pending"),
                    "Failed": ("False", "NotFailed")},
        status={"run": 1, ("runs", 0, "job"): "trainer-1"}),
    Row("new run with queueName: created suspended, suspend handed over without force",
        resource=QUEUED,
        gets=[("Job", "trainer-1")],
        applies=[("Job", "trainer-1")],
        applied={("Job", "trainer-1"): {("spec", "suspend"): True,
                                        ("metadata", "labels", "kueue.x-k8s.io/queue-name"): "team-a"}},
        hand_overs=[("Job", "trainer-1", {"suspend": True}, False)],
        phase="Pending",
        conditions={"Ready": ("False", "WaitingForAdmission"), "Stalled": ("False", "NotStalled")},
        stored={("batch/v1", "Job", "trainer-1"): {("spec", "suspend"): True}}),
    Row("queueName without Kueue installed: Stalled, one Warning",
        resource=QUEUED,
        kueue_installed=False,
        gets=[("Job", "trainer-1")],
        applies=[("Job", "trainer-1")],
        hand_overs=[("Job", "trainer-1", {"suspend": True}, False)],
        phase="Pending",
        conditions={"Ready": ("False", "KueueNotInstalled"), "Stalled": ("True", "KueueNotInstalled")},
        events=[("Warning", "KueueNotInstalled")]),
    Row("queueName naming a LocalQueue that does not exist",
        resource=training_job(queueName="team-b"),
        gets=[("Job", "trainer-1")],
        applies=[("Job", "trainer-1")],
        hand_overs=[("Job", "trainer-1", {"suspend": True}, False)],
        phase="Pending",
        conditions={"Ready": ("False", "LocalQueueNotFound"), "Stalled": ("False", "NotStalled")},
        events=[("Warning", "LocalQueueNotFound")]),
    Row("queued Job we created and still own suspend of: suspend handed over before our intent drops it",
        resource=with_status(QUEUED, run_status(QUEUED, phase="Pending")),
        cached=[applied(QUEUED, "Job")],
        applies=[("Job", "trainer-1")],
        applied={("Job", "trainer-1"): {("spec", "suspend"): ABSENT}},
        hand_overs=[("Job", "trainer-1", {"suspend": True}, False)],
        phase="Pending",
        conditions={"Ready": ("False", "WaitingForAdmission")},
        stored={("batch/v1", "Job", "trainer-1"): {("spec", "suspend"): True}}),
    Row("admitted Job in the API but not in the cache: never suspended again",
        resource=with_status(QUEUED, run_status(QUEUED, phase="Pending")),
        api_only=[taken_over(with_status(applied(QUEUED, "Job"), {"active": 1, "ready": 1}),
                             "kueue-controller", suspend=False)],
        gets=[("Job", "trainer-1")],
        applies=[("Job", "trainer-1")],
        applied={("Job", "trainer-1"): {("spec", "suspend"): ABSENT}},
        phase="Running",
        conditions={"Ready": ("False", "WorkersRunning"), "Running": ("True", "WorkersRunning")},
        stored={("batch/v1", "Job", "trainer-1"): {("spec", "suspend"): False}}),
    Row("healthy run starts running: one Normal event",
        resource=with_status(TRAINER, run_status(TRAINER, phase="Pending", conditions=STARTING_CONDITIONS)),
        cached=[with_status(applied(TRAINER, "Job"), {"active": 1, "ready": 1, "startTime": "2026-11-25T11:00:00Z"})],
        phase="Running",
        conditions={"Running": ("True", "WorkersRunning"), "Succeeded": ("False", "Running")},
        status={("workers", "active"): 1, "startTime": "2026-11-25T11:00:00Z"},
        events=[("Normal", "WorkersRunning")]),
    Row("run succeeded: artifact published, Normal events",
        resource=with_status(TRAINER, run_status(TRAINER, conditions=RUNNING_CONDITIONS)),
        cached=[with_status(applied(TRAINER, "Job"), {"succeeded": 1, "completionTime": "2026-11-25T11:45:00Z",
                                                      "conditions": [job_condition("Complete", "Completed")]})],
        phase="Succeeded",
        conditions={"Ready": ("True", "Succeeded"), "Succeeded": ("True", "Completed"),
                    "Running": ("False", "Succeeded")},
        status={"artifactUri": "s3://models/trainer/run-1/", "artifactRun": 1, ("runs", 0, "phase"): "Succeeded"},
        events=[("Normal", "Succeeded"), ("Normal", "Completed")]),
    Row("run failed: exactly one Warning for Ready, Stalled and Failed",
        resource=with_status(TRAINER, run_status(TRAINER, conditions=RUNNING_CONDITIONS)),
        cached=[with_status(applied(TRAINER, "Job"), {"failed": 1, "conditions": [
            job_condition("Failed", "BackoffLimitExceeded")]})],
        phase="Failed",
        conditions={"Ready": ("False", "BackoffLimitExceeded"), "Stalled": ("True", "BackoffLimitExceeded"),
                    "Failed": ("True", "BackoffLimitExceeded"), "Running": ("False", "Failed")},
        events=[("Warning", "BackoffLimitExceeded")]),
    Row("spec changed: new run, the superseded running Job is deleted",
        resource=with_status(RETRAINED, run_status(TRAINER)),
        cached=[with_status(applied(TRAINER, "Job"), {"active": 1, "ready": 1})],
        gets=[("Job", "trainer-2")],
        applies=[("Job", "trainer-2")],
        deletes=[("Job", "trainer-1")],
        phase="Pending",
        status={"run": 2, ("runs", 0, "phase"): "Superseded", ("runs", 1, "job"): "trainer-2"}),
    Row("spec changed: a finished Job is kept for its TTL, the workers Service no longer rendered is pruned",
        resource=with_status(TRAINER, run_status(DISTRIBUTED, phase="Succeeded")),
        cached=[with_status(applied(DISTRIBUTED, "Job"), {"succeeded": 2, "conditions": [
                    job_condition("Complete", "Completed")]}),
                applied(DISTRIBUTED, "Service", "trainer-workers")],
        gets=[("Job", "trainer-2")],
        applies=[("Job", "trainer-2")],
        deletes=[("Service", "trainer-workers")],
        phase="Pending",
        status={"run": 2, ("runs", 0, "phase"): "Succeeded"},
        stored={("batch/v1", "Job", "trainer-1"): {("metadata", "name"): "trainer-1"}}),
]

FV = feature_view()
FV_HASH = materialization_spec_hash(typed_spec(FV), CONFIG)
FEATURE_VIEW_ROWS = [
    Row("new online view: repo, first materialization, schedule, server",
        resource=FV,
        applies=[("ConfigMap", "driver-stats-feast-repo"), ("Job", materialization_job_name("driver-stats", FV_HASH)),
                 ("CronJob", "driver-stats-materialize"), ("Deployment", "driver-stats-features"),
                 ("PodDisruptionBudget", "driver-stats-features"), ("Service", "driver-stats-features")],
        phase="Materializing",
        conditions={"Materialized": ("False", "Materializing"), "Fresh": ("False", "NeverMaterialized")},
        status={"materializationSpecHash": ABSENT}),
    Row("materialized long ago, past maxStaleness: Fresh goes False with a Warning, no new on-change Job",
        resource=feature_view(status={"lastMaterializedAt": "2026-01-01T00:00:00Z", "materializationSpecHash": FV_HASH,
                                      "conditions": [cond("Fresh", "True", "WithinBudget")]}),
        applies=[("ConfigMap", "driver-stats-feast-repo"), ("CronJob", "driver-stats-materialize"),
                 ("Deployment", "driver-stats-features"), ("PodDisruptionBudget", "driver-stats-features"),
                 ("Service", "driver-stats-features")],
        phase="Progressing",
        conditions={"Materialized": ("True", "Materialized"), "Fresh": ("False", "Stale"),
                    "Ready": ("False", "FeatureServerNotReady")},
        events=[("Warning", "Stale")]),
]

ROWS = [("ModelDeployment", r) for r in MODEL_DEPLOYMENT_ROWS] + [("TrainingJob", r) for r in TRAINING_JOB_ROWS] + \
       [("FeatureView", r) for r in FEATURE_VIEW_ROWS]


@pytest.mark.parametrize("kind,row", ROWS, ids=[f"{k}: {r.id}" for k, r in ROWS])
def test_reconcile(kind, row):
    assert row.resource["kind"] == kind
    h = Harness(FakeKube(kueue_installed=row.kueue_installed, local_queues=((NS, "team-a"),)))
    h.kube.pod_events = row.pod_events
    body = h.add(row.resource)
    for obj in row.cached:
        h.add(obj)
    for obj in row.api_only:
        h.add(obj, cached=False)

    h.reconcile(body)

    kube = h.kube
    assert names(kube, "get") == row.gets
    assert names(kube, "apply") == row.applies
    for (child_kind, name), expected in row.applied.items():
        intent = next(c.detail for c in kube.called("apply") if (c.kind, c.name) == (child_kind, name))
        assert {path: at(intent, path) for path in expected} == expected
    assert names(kube, "delete") == row.deletes
    assert [(c.kind, c.name, c.detail["spec"], c.detail["force"]) for c in kube.called("hand_over")] == row.hand_overs
    writes = kube.called("patch_status")
    if row.phase is None:
        assert writes == []
    else:
        assert len(writes) == 1
        written = writes[0].detail
        assert written["phase"] == row.phase
        assert written["observedGeneration"] == body["metadata"]["generation"]
        conditions = {c["type"]: (c["status"], c["reason"]) for c in written["conditions"]}
        assert {t: conditions.get(t) for t in row.conditions} == row.conditions
        assert {path: at(written, path) for path in row.status} == row.status
    assert [c.detail for c in kube.called("post_event")] == row.events
    for (api_version, child_kind, name), expected in row.stored.items():
        obj = kube.stored(api_version, child_kind, NS, name)
        assert obj is not None, (child_kind, name)
        assert {path: at(obj, path) for path in expected} == expected


@pytest.mark.parametrize("method", ["apply", "delete", "hand_over", "get", "list_pods", "patch_status", "get_pvc",
                                    "warning_events",
                                    "kueue_installed", "local_queue_exists", "workload_of_job", "post_event"])
def test_the_fake_has_kube_s_signatures(method):
    assert inspect.signature(getattr(FakeKube, method)) == inspect.signature(getattr(Kube, method))


# --- sequences ----------------------------------------------------------------------------------

def converged(body: dict) -> Harness:
    """Reconciled once, and the informers have since delivered everything the API server holds."""
    h = Harness()
    h.add(body)
    h.reconcile(body)
    h.sync()
    h.kube.calls.clear()
    return h


def current(h: Harness, body: dict) -> dict:
    return h.ctx.cache.resource(key_of(body))


def test_converged_model_deployment_makes_no_writes():
    h = converged(SCORER)
    h.reconcile(current(h, SCORER))
    assert h.kube.calls == []
    assert h.kube.stored("apps/v1", "Deployment", NS, "scorer")["spec"]["replicas"] == 2


def test_queued_training_job_converges_after_handing_suspend_over():
    h = converged(QUEUED)
    h.reconcile(current(h, QUEUED))
    assert [(c.method, c.kind) for c in h.kube.writes()] == [("hand_over", "Job"), ("apply", "Job")]
    h.sync()
    h.kube.calls.clear()
    h.reconcile(current(h, QUEUED))
    assert h.kube.writes() == [] and names(h.kube, "get") == []
    assert [c.method for c in h.kube.calls] == ["kueue_installed", "workload_of_job", "local_queue_exists"]
    assert h.kube.stored("batch/v1", "Job", NS, "trainer-1")["spec"]["suspend"] is True


def test_status_is_written_once_per_change():
    h = converged(FIXED)
    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                          "observedGeneration": 1})
    h.sync()
    h.reconcile(current(h, FIXED))
    assert [(c.method, c.kind) for c in h.kube.writes()] == [("patch_status", "ModelDeployment"),
                                                             ("post_event", "ModelDeployment")]
    assert h.kube.called("patch_status")[0].detail["phase"] == "Ready"
    assert h.kube.events[0]["type"] == "Normal" and h.kube.events[0]["reason"] == "AllReplicasAvailable"

    h.sync()
    h.kube.calls.clear()
    h.reconcile(current(h, FIXED))
    assert h.kube.calls == []


def test_a_drifted_child_is_applied_again_and_nothing_else():
    h = converged(FIXED)
    live = h.kube.stored("apps/v1", "Deployment", NS, "scorer")
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    h.kube.put(live)
    h.sync()
    h.reconcile(current(h, FIXED))
    assert [(c.method, c.kind) for c in h.kube.writes()] == [("apply", "Deployment")]
    restored = h.kube.stored("apps/v1", "Deployment", NS, "scorer")
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == "kserve/sklearnserver:v0.15.2"


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    """Names of the ModelDeployments rendered, as the reconciler calls the renderer."""
    from mlplatform.controllers import modeldeployment

    rendered: list[str] = []

    def counting(owner, *args, **kwargs):
        rendered.append(owner.name)
        return render_model_deployment(owner, *args, **kwargs)
    monkeypatch.setattr(modeldeployment, "render_model_deployment", counting)
    return rendered


def test_children_as_last_applied_are_not_rendered_again(renders):
    h = converged(FIXED)
    assert renders == ["scorer"]
    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"replicas": 3, "readyReplicas": 1, "updatedReplicas": 3, "observedGeneration": 1})
    h.sync()
    h.reconcile(current(h, FIXED))
    assert renders == ["scorer"], "a status change of a child needs no render"
    assert h.kube.writes() == [], "a replica count alone waits for the progress interval"


def test_progress_alone_is_written_once_the_interval_is_over_and_a_condition_change_at_once():
    h = converged(FIXED)
    key = ("ModelDeployment", NS, "scorer")
    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"replicas": 3, "readyReplicas": 1, "updatedReplicas": 3, "observedGeneration": 1})
    h.sync()
    h.reconcile(current(h, FIXED))
    assert h.kube.writes() == []
    assert h.ctx.queue.stats()[0] == 1, "looked at again when the interval is over"
    h.ctx.status_written_at[key] -= PROGRESS_WRITE_INTERVAL_SECONDS
    h.reconcile(current(h, FIXED))
    assert [c.method for c in h.kube.writes()] == ["patch_status"]
    assert h.kube.called("patch_status")[0].detail["readyReplicas"] == 1

    h.sync()
    h.kube.calls.clear()
    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="kube-controller-manager",
                  status={"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                          "observedGeneration": 1})
    h.sync()
    h.reconcile(current(h, FIXED))
    assert [c.method for c in h.kube.writes()] == ["patch_status", "post_event"], "Ready is written at once"


@pytest.mark.parametrize("change", ["child spec edited", "child deleted", "resource annotated", "resource edited"])
def test_a_changed_input_or_child_is_rendered_and_applied_again(renders, change):
    h = converged(FIXED)
    body = current(h, FIXED)
    if change == "child spec edited":
        live = h.kube.stored("apps/v1", "Deployment", NS, "scorer")
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
        h.kube.put(live)
    elif change == "child deleted":
        h.kube.delete("v1", "Service", NS, "scorer")
    elif change == "resource annotated":
        body = {**body, "metadata": {**body["metadata"], "annotations": {"team": "risk"}}}
        h.kube.put(body)
    else:
        body = {**body, "spec": {**body["spec"], "replicas": 4}, "metadata": {**body["metadata"], "generation": 2}}
        h.kube.put(body)
    h.sync()
    h.kube.calls.clear()
    h.reconcile(current(h, body))
    # The render is keyed on its own inputs: a changed child is applied again from the kept render.
    assert renders == (["scorer"] if change.startswith("child") else ["scorer", "scorer"])
    if change in ("child spec edited", "child deleted", "resource edited"):
        assert [c.kind for c in h.kube.called("apply")] == [{"child spec edited": "Deployment", "child deleted": "Service",
                                                              "resource edited": "Deployment"}[change]]


def test_the_render_skip_is_keyed_on_every_argument_of_the_render():
    """The plan step's key covers what render_model_deployment takes, the configuration included: a changed
    configuration renders and applies again (a key of a few chosen inputs froze the children)."""
    from mlplatform.controllers import modeldeployment

    assert list(inspect.signature(render_model_deployment).parameters) == ["owner", "spec", "config", "model_uri"]
    h = converged(FIXED)
    body = current(h, FIXED)
    resolved = modeldeployment.resolve(h.ctx, key_of(body), body)
    before = modeldeployment.render_key(resolved, h.ctx.config)
    h.ctx.config = OperatorConfig.model_validate({"storageInitializer": {"image": "registry.internal/init:2"}})
    assert modeldeployment.render_key(resolved, h.ctx.config) != before
    h.ctx.config = OperatorConfig.model_validate({"runtimes": {"sklearn": {"image": "registry.internal/sklearn:9"}}})
    h.reconcile(body)
    assert [c.kind for c in h.kube.called("apply")] == ["Deployment"]
    live = h.kube.stored("apps/v1", "Deployment", NS, "scorer")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.internal/sklearn:9"


def test_no_feature_opts_out_of_the_render_skip(renders):
    """A canary and a model cache read live state after the render, on every reconcile: the render itself is
    skipped for them too while its inputs are unchanged, and their decisions still reach the children."""
    canary = model_deployment(replicas=2, rollout={"canary": {"steps": [50], "stepSeconds": 0}},
                              model={"uri": "s3://models/churn/v3/", "cache": {"size": "1Gi"}})
    h = converged(canary)
    h.reconcile(current(h, canary))
    h.reconcile(current(h, canary))
    assert renders == ["scorer"]


def test_admitted_job_missing_from_a_fresh_cache_is_not_suspended_again():
    before = converged(QUEUED)
    kube = before.kube
    kube.update("batch/v1", "Job", NS, "trainer-1", manager="kueue-controller", spec={"suspend": False})
    restarted = Harness(kube)
    restarted.ctx.cache.upsert("TrainingJob", kube.stored(API_VERSION, "TrainingJob", NS, "trainer"))

    restarted.reconcile(current(restarted, QUEUED))

    assert names(kube, "get") == [("Job", "trainer-1")]
    assert kube.called("hand_over") == []
    assert all(at(c.detail, ("spec", "suspend")) is ABSENT for c in kube.called("apply"))
    assert kube.stored("batch/v1", "Job", NS, "trainer-1")["spec"]["suspend"] is False


def test_an_immutable_job_template_keeps_the_run_as_it_started():
    """The operator's configuration changed the pod template (an annotation it now copies): the API server
    refuses the running Job's new template, and the run goes on as it started, the ttl edit made with it too."""
    annotated = copy.deepcopy(TRAINER)
    annotated["metadata"]["annotations"] = {"team.example.com/cost-center": "42"}
    h = converged(annotated)
    h.ctx.config = OperatorConfig.model_validate({"podAnnotationPrefixes": ["team.example.com/"]})
    h.replace(training_job(ttlSecondsAfterFinished=60, generation=2))

    h.reconcile(current(h, TRAINER))

    assert names(h.kube, "apply") == [("Job", "trainer-1")]
    assert h.kube.called("delete") == []
    written = h.kube.called("patch_status")[0].detail
    assert written["observedGeneration"] == 2 and written["run"] == 1
    assert h.kube.stored("batch/v1", "Job", NS, "trainer-1")["spec"]["ttlSecondsAfterFinished"] != 60


POLICED = training_job(workers=2, failurePolicy={"maxRestarts": 1, "nonRetryableExitCodes": [2]})


def running(h: Harness, job: str = "trainer-1", workers: int = 2) -> dict:
    """The Job controller reports the run's workers running; returns the Job."""
    h.kube.update("batch/v1", "Job", NS, job, manager="kube-controller-manager",
                  status={"active": workers, "ready": workers, "startTime": "2026-11-25T11:00:00Z"})
    h.sync()
    h.kube.calls.clear()
    return h.kube.stored("batch/v1", "Job", NS, job)


@pytest.mark.parametrize("edit", [
    {"failurePolicy": {"maxRestarts": 5, "restartOnPreemption": False, "nonRetryableExitCodes": [3]}},
    {"activeDeadlineSeconds": 3600},
    {"ttlSecondsAfterFinished": 60},
    {"failurePolicy": None, "activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 0},
], ids=["failurePolicy", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "all three"])
def test_a_policy_edit_keeps_the_running_job_and_reaches_it_where_kubernetes_allows(edit):
    h = converged(POLICED)
    before = running(h)
    spec = {k: v for k, v in {**POLICED["spec"], **edit}.items() if v is not None}

    h.replace(training_job(generation=2, **spec))
    h.reconcile(current(h, POLICED))

    assert h.kube.called("delete") == []
    job = h.kube.stored("batch/v1", "Job", NS, "trainer-1")
    assert job["metadata"]["uid"] == before["metadata"]["uid"]
    # The run's pod template and podFailurePolicy as created (Kubernetes refuses to change them on a Job) ...
    assert job["spec"]["template"] == before["spec"]["template"]
    assert job["spec"]["podFailurePolicy"] == before["spec"]["podFailurePolicy"]
    # ... what may change on a Job, changed.
    assert job["spec"].get("activeDeadlineSeconds") == spec.get("activeDeadlineSeconds")
    assert job["spec"]["ttlSecondsAfterFinished"] == spec.get("ttlSecondsAfterFinished",
                                                              CONFIG.defaults.training_ttl_seconds_after_finished)
    status = current(h, POLICED)["status"]
    assert status["run"] == 1 and [r["run"] for r in status["runs"]] == [1] and status["phase"] == "Running"
    assert status["observedGeneration"] == 2 and status["runGeneration"] == 1


def test_an_edited_max_restarts_applies_to_the_current_run_at_once():
    h = converged(POLICED)
    running(h)
    h.replace(training_job(generation=2, **{**POLICED["spec"], "failurePolicy": {"maxRestarts": 0}}))
    h.reconcile(current(h, POLICED))
    fail_job(h, "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    h.reconcile(current(h, POLICED))

    assert h.kube.called("delete") == []  # no restart left: the run fails instead of starting again
    assert current(h, POLICED)["status"]["phase"] == "Failed"


def test_a_run_started_by_an_earlier_operator_goes_on_after_the_upgrade():
    """Earlier operators hashed failurePolicy into the run's identity: their status.runSpecHash is the same run."""
    h = converged(POLICED)
    running(h)
    stored = h.kube.stored(API_VERSION, "TrainingJob", NS, "trainer")
    earlier = {**stored["status"], "runSpecHash": earlier_run_spec_hash(typed_spec(POLICED))}
    assert earlier["runSpecHash"] != stored["status"]["runSpecHash"]
    h.ctx.cache.upsert("TrainingJob", h.kube.put(with_status(stored, earlier)))

    h.reconcile(current(h, POLICED))

    assert h.kube.called("delete") == []
    written = h.kube.called("patch_status")[0].detail
    assert written["runSpecHash"] == run_spec_hash(typed_spec(POLICED)) and current(h, POLICED)["status"]["run"] == 1


def test_a_queue_edit_moves_a_waiting_run_and_leaves_an_admitted_one_where_it_was_admitted():
    h = converged(QUEUED)
    h.reconcile(current(h, QUEUED))  # suspend handed over to Kueue
    h.sync()
    h.replace(training_job(queueName="team-b", generation=2))
    h.reconcile(current(h, QUEUED))
    waiting = h.kube.stored("batch/v1", "Job", NS, "trainer-1")
    assert waiting["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-b" and waiting["spec"]["suspend"]

    h.kube.update("batch/v1", "Job", NS, "trainer-1", manager="kueue-controller", spec={"suspend": False})
    running(h, workers=1)
    h.replace(training_job(queueName="team-c", generation=3))
    h.reconcile(current(h, QUEUED))
    admitted = h.kube.stored("batch/v1", "Job", NS, "trainer-1")
    assert admitted["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-b"
    assert admitted["metadata"]["uid"] == waiting["metadata"]["uid"] and not admitted["spec"]["suspend"]
    assert h.kube.called("delete") == [] and current(h, QUEUED)["status"]["run"] == 1


def test_a_job_that_cannot_be_created_is_an_error():
    h = Harness()
    body = h.add(TRAINER)
    h.kube.fail("apply", "Job", "trainer-1", kube_error(422, "spec.template.spec.containers[0].image: Required value"))
    with pytest.raises(KubeError) as raised:
        h.reconcile(body)
    assert raised.value.status == 422
    assert h.kube.called("patch_status") == []


def test_dependents_are_the_model_deployments_reading_a_view_or_deploying_a_run():
    h = Harness()
    for body in (model_deployment("uses-features", features=["driver-stats"]),
                 model_deployment("from-run", model={"fromTrainingJob": "trainer", "format": "sklearn"}),
                 model_deployment("plain"),
                 {**model_deployment("elsewhere", features=["driver-stats"]),
                  "metadata": {"name": "elsewhere", "namespace": "other", "uid": "u-other"}}):
        h.add(body)
    assert dependents(h.ctx, "FeatureView", NS, "driver-stats") == [("ModelDeployment", NS, "uses-features")]
    assert dependents(h.ctx, "TrainingJob", NS, "trainer") == [("ModelDeployment", NS, "from-run")]
    assert dependents(h.ctx, "TrainingJob", NS, "other-trainer") == []


# --- the control loop ---------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("err,outcome", [
    (InvalidSpec("spec.model: set exactly one"), loop.Outcome.INVALID),
    (RenderError("spec.resources.gpu.type", "unknown"), loop.Outcome.INVALID),
    (namespace_terminating(), loop.Outcome.GONE),
    (kube_error(403, "forbidden: RBAC"), loop.Outcome.RETRY),
    (kube_error(409, "conflict"), loop.Outcome.RETRY),
    (kube_error(500, "etcdserver: leader changed"), loop.Outcome.RETRY),
    (ConnectionResetError("peer reset"), loop.Outcome.RETRY),
], ids=["invalid-spec", "render-error", "namespace-terminating", "403-rbac", "409", "500", "connection"])
def test_classify(err, outcome):
    assert loop.classify(err) is outcome


@dataclass
class LoopRow:
    id: str
    resource: dict | None
    failures: list[tuple[str, str, str, KubeError]] = field(default_factory=list)
    outcome: loop.Outcome = loop.Outcome.DONE
    requeued: bool = False
    phase: str | None = None
    events: list[tuple[str, str]] = field(default_factory=list)


INVALID_MD = model_deployment(model={"format": "sklearn"})
LOOP_ROWS = [
    LoopRow("invalid spec: Stalled written, not requeued", INVALID_MD,
            outcome=loop.Outcome.INVALID, phase="Stalled", events=[("Warning", "InvalidSpec")]),
    LoopRow("render error raised by a reconciler: reported like an invalid spec",
            training_job(resources={"gpu": {"count": 1, "type": "nvidia-tpu"}}),
            outcome=loop.Outcome.INVALID, phase="Stalled", events=[("Warning", "InvalidSpec")]),
    LoopRow("namespace terminating: gone, not requeued", FIXED,
            failures=[("apply", "Service", "scorer", namespace_terminating())], outcome=loop.Outcome.GONE),
    LoopRow("namespace terminating while reporting an invalid spec", INVALID_MD,
            failures=[("patch_status", "ModelDeployment", "scorer", namespace_terminating())],
            outcome=loop.Outcome.GONE),
    LoopRow("server error: retried with backoff", FIXED,
            failures=[("apply", "Service", "scorer", kube_error(500, "etcdserver: request timed out"))],
            outcome=loop.Outcome.RETRY, requeued=True),
    LoopRow("resource not in the cache: gone, cleaned up without a call", None, outcome=loop.Outcome.GONE),
]


@pytest.mark.parametrize("row", LOOP_ROWS, ids=[r.id for r in LOOP_ROWS])
def test_process(row):
    clock = Clock()
    h = Harness(clock=clock)
    key = ("ModelDeployment", NS, "absent")
    if row.resource is not None:
        key = key_of(h.add(row.resource))
    for method, kind, name, error in row.failures:
        h.kube.fail(method, kind, name, error)

    assert loop.process(h.ctx, key) is row.outcome

    if row.resource is None:
        assert h.kube.calls == []
    writes = h.kube.called("patch_status")
    assert [w.detail["phase"] for w in writes if row.phase] == ([row.phase] if row.phase else [])
    if row.phase:
        conditions = {c["type"]: (c["status"], c["reason"]) for c in writes[0].detail["conditions"]}
        assert conditions["Stalled"] == ("True", "InvalidSpec") and conditions["Ready"] == ("False", "InvalidSpec")
    assert [c.detail for c in h.kube.called("post_event")] == row.events
    metrics = h.ctx.metrics.registry
    assert metrics.get_sample_value("mlplatform_reconcile_total", {"kind": key[0], "result": row.outcome.value}) == 1
    assert (metrics.get_sample_value("mlplatform_reconcile_errors_total", {"kind": key[0]}) or 0) == (
        1 if row.requeued else 0)
    if row.requeued:
        assert h.ctx.queue.stats() == (1, 0.0)
        assert h.ctx.queue.get(timeout=0) is None
        clock.now += 0.5
        assert h.ctx.queue.get(timeout=0) == key
    else:
        assert h.ctx.queue.stats() == (0, 0.0)


@pytest.mark.parametrize("resource,failure,next_delay", [
    (INVALID_MD, None, 0.5),
    (FIXED, ("apply", "Service", "scorer", namespace_terminating()), 0.5),
    (FIXED, ("apply", "Service", "scorer", kube_error(500, "boom")), 4.0),
], ids=["invalid-forgets", "gone-forgets", "retry-counts"])
def test_terminal_outcomes_forget_earlier_failures(resource, failure, next_delay):
    clock = Clock()
    h = Harness(clock=clock)
    key = key_of(h.add(resource))
    h.ctx.queue.add_after_failure(key)
    h.ctx.queue.add_after_failure(key)
    clock.now += 10
    assert h.ctx.queue.get(timeout=0) == key
    if failure:
        h.kube.fail(*failure)
    loop.process(h.ctx, key)
    h.ctx.queue.done(key)
    assert h.ctx.queue.add_after_failure(key) == next_delay


def test_enqueue_routes_changes_to_the_keys_to_reconcile():
    clock = Clock()
    h = Harness(clock=clock)
    h.add(model_deployment("from-run", model={"fromTrainingJob": "trainer", "format": "sklearn"}))
    trainer = h.add(TRAINER)
    loop.enqueue(h.ctx, Change("TrainingJob", trainer, False))
    due = {h.ctx.queue.get(timeout=0), h.ctx.queue.get(timeout=0)}
    assert due == {("TrainingJob", NS, "trainer"), ("ModelDeployment", NS, "from-run")}
    for key in due:
        h.ctx.queue.done(key)

    job = applied(TRAINER, "Job")
    loop.enqueue(h.ctx, Change("Job", job, False))
    assert h.ctx.queue.get(timeout=0) is None
    clock.now += loop.CHILD_EVENT_DELAY_SECONDS
    assert h.ctx.queue.get(timeout=0) == ("TrainingJob", NS, "trainer")

    h.ctx.queue.add(("ModelDeployment", NS, "gone"), delay=5)
    loop.enqueue(h.ctx, Change("ModelDeployment", model_deployment("gone"), True))
    assert h.ctx.queue.get(timeout=0) == ("ModelDeployment", NS, "gone"), "a deletion is handed to a worker at once"


def test_a_settled_child_puts_its_owner_before_new_resources_and_a_progressing_one_does_not():
    clock = Clock()
    h = Harness(clock=clock)
    owner = h.add(FIXED)
    owner_key = key_of(owner)
    h.reconcile(owner)
    clock.now += 60
    while (drained := h.ctx.queue.get(timeout=0)) is not None:
        h.ctx.queue.done(drained)
    deployment = h.kube.stored("apps/v1", "Deployment", NS, FIXED["metadata"]["name"])
    wanted = deployment["spec"]["replicas"]
    for name in ("new-1", "new-2"):
        h.ctx.queue.add(("ModelDeployment", NS, name))

    meta = {**deployment["metadata"], "resourceVersion": "999999"}  # the Deployment controller's status update
    rolling = {**deployment, "metadata": meta, "status": {"observedGeneration": 1, "replicas": wanted,
                                                          "updatedReplicas": wanted, "availableReplicas": wanted - 1}}
    loop.enqueue(h.ctx, Change("Deployment", rolling, False))
    clock.now += loop.CHILD_EVENT_DELAY_SECONDS
    assert h.ctx.queue.get(timeout=0) == ("ModelDeployment", NS, "new-1"), "a rollout on its way waits its turn"

    settled = {**rolling, "metadata": {**meta, "resourceVersion": "1000000"},
               "status": {**rolling["status"], "availableReplicas": wanted}}
    loop.enqueue(h.ctx, Change("Deployment", settled, False))
    clock.now += loop.CHILD_EVENT_DELAY_SECONDS
    assert h.ctx.queue.get(timeout=0) == owner_key, "a rollout done: its owner's Ready goes before new resources"


RESTARTABLE = training_job(workers=2, failurePolicy={"maxRestarts": 1, "nonRetryableExitCodes": [2]})


def fail_job(h: Harness, reason: str, message: str) -> str:
    """The Job controller marks the run's Job Failed; returns the failed Job's UID."""
    h.kube.update("batch/v1", "Job", NS, "trainer-1", manager="kube-controller-manager",
                  status={"conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message}]})
    h.sync()
    h.kube.calls.clear()
    return h.kube.stored("batch/v1", "Job", NS, "trainer-1")["metadata"]["uid"]


def test_a_failed_attempt_is_restarted_whole_once_and_counted():
    h = converged(RESTARTABLE)
    failed_uid = fail_job(h, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    failed_job = h.kube.stored("batch/v1", "Job", NS, "trainer-1")
    h.reconcile(current(h, RESTARTABLE))
    assert names(h.kube, "delete") == [("Job", "trainer-1")]
    assert h.kube.stored("batch/v1", "Job", NS, "trainer-1") is None
    record = h.kube.called("patch_status")[0].detail["runs"][0]
    assert record["restarts"] == 1 and record["handledJobUid"] == failed_uid and record["reason"] == "Restarting"
    assert [c.detail for c in h.kube.called("post_event")] == [("Warning", "RunRestarted")]
    # The same failure seen again (a stale cache still holds the Job): acted on once only.
    h.ctx.cache.upsert("Job", failed_job)
    h.kube.calls.clear()
    h.reconcile(current(h, RESTARTABLE))
    assert h.kube.writes() == [] and h.kube.called("post_event") == []
    # Gone: the next reconcile creates the Job again, same name and run.
    h.sync()
    h.kube.calls.clear()
    h.reconcile(current(h, RESTARTABLE))
    assert names(h.kube, "apply") == [("Job", "trainer-1")]
    assert h.kube.stored("batch/v1", "Job", NS, "trainer-1")["metadata"]["uid"] != failed_uid
    assert current(h, RESTARTABLE)["status"]["run"] == 1


def test_a_non_retryable_exit_code_fails_the_run_without_a_new_attempt():
    h = converged(RESTARTABLE)
    fail_job(h, "PodFailurePolicy",
             "Container trainer for pod ns/trainer-1-1-abcde failed with exit code 2 matching FailJob rule at index 1")
    h.reconcile(current(h, RESTARTABLE))
    assert names(h.kube, "delete") == [] and h.kube.called("post_event")[0].detail == ("Warning", "NonRetryableExitCode")
    written = h.kube.called("patch_status")[0].detail
    assert written["phase"] == "Failed" and "worker 1 (pod trainer-1-1-abcde) exited with code 2" in \
        written["runs"][0]["message"]


def test_model_cache_is_created_once_shared_by_reference_and_withholds_the_workload_until_filled():
    from mlplatform.render.model_cache import cache_claim_name
    cache = {"size": "10Gi"}
    a = model_deployment("a", model={"uri": "s3://models/churn/v3/", "cache": cache}, replicas=1)
    b = model_deployment("b", model={"uri": "s3://models/churn/v3/", "cache": cache}, replicas=1)
    h = Harness()
    for body in (a, b):
        h.add(body)
        h.reconcile(body)
    claim = cache_claim_name("s3://models/churn/v3/")
    applies = [c for c in h.kube.called("apply") if c.kind in ("PersistentVolumeClaim", "Job")]
    assert [(c.kind, c.name) for c in applies] == [("PersistentVolumeClaim", claim), ("Job", f"{claim}-fill")] * 2
    first, second = applies[:2], applies[2:]
    assert all("spec" in c.detail for c in first)  # a creates them
    assert all(set(c.detail["metadata"]) == {"name", "namespace", "ownerReferences"} and "spec" not in c.detail
               for c in second)  # b adds its own owner reference only
    # b's own holder: a ControllerRevision b controls (pruned when b no longer needs the claim).
    holder = h.kube.stored("apps/v1", "ControllerRevision", NS, "b-cache-" + claim[len("model-cache-"):])
    assert holder["metadata"]["ownerReferences"][0]["uid"] == "uid-modeldeployment-b"
    assert holder["data"] == {"claim": claim, "uri": "s3://models/churn/v3/"}
    assert [(r["kind"], r["uid"]) for c in second for r in c.detail["metadata"]["ownerReferences"]] == \
        [("ControllerRevision", holder["metadata"]["uid"])] * 2
    assert not [c for c in h.kube.called("apply") if c.kind == "Deployment"]  # withheld: the fill has not completed
    status = h.kube.stored(API_VERSION, "ModelDeployment", NS, "a")["status"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["ModelCached"] == "ClaimPending"  # no storage yet

    pvc = h.kube.stored("v1", "PersistentVolumeClaim", NS, claim)
    h.kube.put(with_status(pvc, {"phase": "Bound"}))
    h.reconcile(current(h, a))
    status = h.kube.stored(API_VERSION, "ModelDeployment", NS, "a")["status"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["ModelCached"] == "Filling"
    assert not [c for c in h.kube.called("apply") if c.kind == "Deployment"]

    job = h.kube.stored("batch/v1", "Job", NS, f"{claim}-fill")
    h.kube.put(with_status(job, {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}))
    h.kube.calls.clear()
    h.reconcile(current(h, a))
    assert [c.kind for c in h.kube.called("apply")] == ["Deployment"]  # filled: served, nothing re-applied to the cache
    status = h.kube.stored(API_VERSION, "ModelDeployment", NS, "a")["status"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["ModelCached"] == "Filled"


def _fill(h: Harness, uri: str) -> None:
    claim = cache_claim_name(uri)
    h.kube.put(with_status(h.kube.stored("v1", "PersistentVolumeClaim", NS, claim), {"phase": "Bound"}))
    job = h.kube.stored("batch/v1", "Job", NS, f"{claim}-fill")
    h.kube.put(with_status(job, {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}))


def _claim_of(dep: dict) -> str:
    return dep["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]


def test_a_new_model_uri_is_filled_first_while_the_running_template_keeps_serving():
    cache = {"size": "10Gi"}
    md = model_deployment(model={"uri": "s3://models/churn/v3/", "cache": cache}, replicas=2)
    h = Harness()
    h.add(md)
    h.reconcile(md)
    _fill(h, "s3://models/churn/v3/")
    h.sync()
    h.reconcile(current(h, md))
    old_claim = cache_claim_name("s3://models/churn/v3/")
    assert _claim_of(h.kube.stored("apps/v1", "Deployment", NS, "scorer")) == old_claim

    edited = model_deployment(model={"uri": "s3://models/churn/v4/", "cache": cache}, replicas=2)
    edited["metadata"]["generation"] = 2
    h.replace(edited)
    h.kube.calls.clear()
    h.reconcile(current(h, edited))
    new_claim = cache_claim_name("s3://models/churn/v4/")
    assert [c.name for c in h.kube.called("apply") if c.kind != "ControllerRevision"] == [new_claim, f"{new_claim}-fill"]
    assert {c.name for c in h.kube.called("apply") if c.kind == "ControllerRevision"} == \
        {"scorer-cache-" + new_claim[len("model-cache-"):]}  # this resource's hold on the new claim
    assert h.kube.called("delete") == []
    assert _claim_of(h.kube.stored("apps/v1", "Deployment", NS, "scorer")) == old_claim, \
        "the running Deployment took the new, unfilled claim"
    cached = {c["type"]: c for c in current(h, edited)["status"]["conditions"]}["ModelCached"]
    assert cached["status"] == "False" and "s3://models/churn/v4/" in cached["message"]
    assert "the running template keeps serving" in cached["message"]

    _fill(h, "s3://models/churn/v4/")
    h.sync()
    h.reconcile(current(h, edited))
    assert _claim_of(h.kube.stored("apps/v1", "Deployment", NS, "scorer")) == new_claim


def test_a_claim_without_our_cache_label_is_never_adopted():
    claim = cache_claim_name("s3://models/churn/v3/")
    md = model_deployment(model={"uri": "s3://models/churn/v3/", "cache": {"size": "10Gi"}}, replicas=1)
    h = Harness()
    h.kube.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": NS, "labels": {"team": "someone-else"}},
                "spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Bound"}})
    h.add(md)
    h.reconcile(md)
    assert h.kube.called("apply") == [] or all(c.kind not in ("PersistentVolumeClaim", "Job", "Deployment")
                                               for c in h.kube.called("apply"))
    assert h.kube.stored("v1", "PersistentVolumeClaim", NS, claim)["metadata"].get("ownerReferences") is None
    status = current(h, md)["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["ModelCached"]["status"], conditions["ModelCached"]["reason"]) == ("False", "CacheConflict")
    assert "without the label mlplatform.dev/model-cache=" in conditions["ModelCached"]["message"]
    assert status["phase"] == "Stalled" and conditions["Ready"]["reason"] == "CacheConflict"


def _settle(h: Harness) -> None:
    """The Deployment controller: the current template on every replica."""
    dep = h.kube.stored("apps/v1", "Deployment", NS, "scorer")
    n = dep["spec"].get("replicas", 1)
    h.kube.put(with_status(dep, {"observedGeneration": dep["metadata"]["generation"], "replicas": n,
                                 "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}))
    h.sync()


def _holders(h: Harness) -> list[str]:
    return sorted(o["data"]["uri"] for (_, kind, _, _), o in h.kube.objects.items()
                  if kind == "ControllerRevision" and "data" in o and "claim" in o["data"])


def test_claims_of_earlier_uris_are_let_go_once_the_rollout_settled_keeping_the_previous_one():
    """Daily retraining: every run a new URI and claim. Once the Deployment has rolled to the newest claim, this
    resource lets go of all but the previous one (operator configuration, default 1): its holder of each older
    claim is pruned, and the garbage collector deletes a claim no holder is left on."""
    cache = {"size": "10Gi"}
    h = Harness()
    uris = [f"s3://models/churn/run-{i}/" for i in range(1, 4)]
    for generation, uri in enumerate(uris, start=1):
        md = model_deployment(model={"uri": uri, "cache": cache}, replicas=2)
        md["metadata"]["generation"] = generation
        if generation == 1:
            h.add(md)
        else:
            h.replace(md)
        h.reconcile(current(h, md))
        _fill(h, uri)
        h.sync()
        h.reconcile(current(h, md))  # filled: the Deployment takes the new claim
        if generation > 1:
            assert len(_holders(h)) == generation, "nothing let go before the rollout settled"
        _settle(h)
        h.reconcile(current(h, md))
    assert _holders(h) == uris[1:], "the current claim and the previous one"
    pruned = [c.name for c in h.kube.called("delete") if c.kind == "ControllerRevision"]
    assert pruned == ["scorer-cache-" + cache_claim_name(uris[0])[len("model-cache-"):]]

    h.ctx.config = OperatorConfig.model_validate({"defaults": {"modelCachePreviousClaims": 0}})
    h.reconcile(current(h, md))
    assert _holders(h) == uris[2:]


def test_a_holder_the_informer_delivers_before_the_prune_is_not_pruned():
    """Interleaving: the new holder's watch event lands in the cache between its apply and this reconcile's
    prune (seen on the real control plane): it is among the children applied, so it stays."""
    md = model_deployment(model={"uri": "s3://models/churn/v3/", "cache": {"size": "1Gi"}}, replicas=1)
    h = Harness()
    apply = h.kube.apply

    def delivered_at_once(obj, field_manager=None):
        out = apply(obj, field_manager) if field_manager else apply(obj)
        if obj["kind"] == "ControllerRevision":
            h.ctx.cache.upsert("ControllerRevision", out)
        return out
    h.kube.apply = delivered_at_once
    h.add(md)
    h.reconcile(md)
    assert [c for c in h.kube.called("delete") if c.kind == "ControllerRevision"] == []
    assert h.kube.stored("apps/v1", "ControllerRevision", NS, "scorer-cache-" +
                         cache_claim_name("s3://models/churn/v3/")[len("model-cache-"):]) is not None
