"""Thin reconcilers, one module per kind: read, render, apply, report."""

from . import featureview, modeldeployment, trainingjob

RECONCILERS = {
    "FeatureView": featureview.reconcile,
    "ModelDeployment": modeldeployment.reconcile,
    "TrainingJob": trainingjob.reconcile,
}
