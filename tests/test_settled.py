"""Which child changes put their owner in the work queue's first lane."""

from __future__ import annotations

import pytest

from mlplatform.runtime.settled import reports_settled


def deployment(wanted=2, updated=2, available=2, replicas=2, generation=3, observed=3, conditions=()):
    return {"metadata": {"generation": generation}, "spec": {"replicas": wanted},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available,
                       "replicas": replicas, "conditions": list(conditions)}}


@pytest.mark.parametrize(("kind", "obj", "settled"), [
    ("Deployment", deployment(), True),
    ("Deployment", deployment(available=1), False),  # one replica on the way
    ("Deployment", deployment(updated=1), False),  # a rollout half done
    ("Deployment", deployment(replicas=3), False),  # an old replica still terminating
    ("Deployment", deployment(observed=2), False),  # the latest spec not looked at yet
    ("Deployment", deployment(available=0, conditions=[{"type": "Progressing", "status": "False",
                                                        "reason": "ProgressDeadlineExceeded"}]), True),
    ("Deployment", deployment(wanted=0, updated=0, available=0, replicas=0), True),  # scaled to zero
    ("Deployment", {"metadata": {"name": "x"}}, False),  # a relist's head only
    ("LeaderWorkerSet", {"metadata": {"generation": 1}, "spec": {"replicas": 2},
                         "status": {"readyReplicas": 2, "updatedReplicas": 2, "replicas": 2}}, True),
    ("Pod", {"metadata": {}, "status": {"phase": "Running"}}, False),
    ("Job", {"metadata": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}, True),
    ("Job", {"metadata": {}, "status": {"active": 2}}, False),
    ("Workload", {"metadata": {}, "status": {"conditions": [{"type": "Admitted", "status": "True"}]}}, True),
    ("Workload", {"metadata": {}, "status": {"conditions": [{"type": "QuotaReserved", "status": "True"}]}}, False),
    ("Service", {"metadata": {}}, True),
    ("HTTPRoute", {"metadata": {}, "status": {"parents": []}}, True),
    ("PodDisruptionBudget", {"metadata": {}, "status": {"currentHealthy": 2, "desiredHealthy": 1}}, False),
])
def test_a_child_reports_settled(kind, obj, settled):
    assert reports_settled(kind, obj) is settled
