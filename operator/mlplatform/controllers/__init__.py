"""Thin reconcilers, one module per kind: read, render, apply, report.

CONTROLLERS is the one registry of what the loop does per kind: the API's KINDS say which kinds exist
(CRDs, docs, cache), this says how each is reconciled and whose reconcile a change of it calls for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..api import KINDS
from . import batchprediction, featureview, modeldeployment, trainingjob


@dataclass(frozen=True)
class Controller:
    reconcile: Callable  # (ctx, key, body) -> None
    # (ctx, namespace, name) -> keys of other resources that read this one (reconciled when it changes)
    dependents: Callable = lambda ctx, namespace, name: []


CONTROLLERS: dict[str, Controller] = {
    "FeatureView": Controller(featureview.reconcile,
                              lambda ctx, ns, name: modeldeployment.dependents(ctx, "FeatureView", ns, name)
                              + trainingjob.triggered_by(ctx, ns, name)),
    "ModelDeployment": Controller(modeldeployment.reconcile,
                                  lambda ctx, ns, name: batchprediction.dependents(ctx, "ModelDeployment", ns, name)),
    "TrainingJob": Controller(trainingjob.reconcile,
                              lambda ctx, ns, name: modeldeployment.dependents(ctx, "TrainingJob", ns, name)
                              + batchprediction.dependents(ctx, "TrainingJob", ns, name)),
    "BatchPrediction": Controller(batchprediction.reconcile),
}
assert CONTROLLERS.keys() == KINDS.keys(), "every kind of the API has exactly one controller"
RECONCILERS = {kind: controller.reconcile for kind, controller in CONTROLLERS.items()}
