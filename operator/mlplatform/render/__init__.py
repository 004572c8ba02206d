"""Pure rendering: a validated resource + operator configuration -> the child manifests to apply.

The operator and `mlplatform render` call the same functions; nothing here talks to a cluster.
"""

from __future__ import annotations

from ..api.validation import Resource
from ..config import OperatorConfig
from .batchprediction import render_batch_prediction
from .common import Owner, Rendered, RenderError
from .featureview import render_feature_view
from .modeldeployment import render_model_deployment
from .trainingjob import render_training_job


def render_offline(resource: Resource, config: OperatorConfig, namespace: str = "default",
                   artifacts: dict[str, str] | None = None) -> Rendered:
    """What the operator applies for a resource that was just created (a TrainingJob's run 1).

    artifacts: TrainingJob name -> artifact URI, to preview a ModelDeployment that deploys one.
    """
    # The resource's own annotations: the configuration's podAnnotationPrefixes copy some onto pods.
    annotations = {str(k): str(v) for k, v in ((resource.metadata or {}).get("annotations") or {}).items()}
    owner = Owner(resource.kind, resource.name, resource.namespace or namespace, generation=1, annotations=annotations)
    spec = resource.spec
    if resource.kind == "ModelDeployment":
        model_uri = spec.model.uri or (artifacts or {}).get(spec.model.from_training_job)
        return render_model_deployment(owner, spec, config, model_uri)
    if resource.kind == "TrainingJob":
        rendered = render_training_job(owner, spec, config, run=1)
        rendered.notes.insert(0, "run 1 shown: each spec change that starts a new run renders <name>-<run>")
        return rendered
    if resource.kind == "FeatureView":
        return render_feature_view(owner, spec, config)
    if resource.kind == "BatchPrediction":
        return _render_batch_offline(owner, spec, config, artifacts or {})
    raise ValueError(f"no renderer for kind {resource.kind}")


def _render_batch_offline(owner: Owner, spec, config: OperatorConfig, artifacts: dict[str, str]) -> Rendered:
    """Run 1 with the model as --artifact (or model.uri) gives it; a model only the running operator can resolve
    (a TrainingJob's run, a ModelDeployment's model) withholds the Job, and says so."""
    model = spec.model
    source = model.from_training_job or model.from_model_deployment
    uri = model.uri or artifacts.get(source or "")
    rendered = render_batch_prediction(owner, spec, config, 1 if uri else None, uri, uri)
    if uri is None:
        what = (f"spec.model.fromTrainingJob {source!r} has no artifact yet" if model.from_training_job
                else f"spec.model.fromModelDeployment {source!r}: what it serves is read when a run starts")
        rendered.notes.insert(0, f"Job withheld: {what}; preview it with --artifact {source}=<uri>")
    else:
        rendered.notes.insert(0, "run 1 shown: each spec change (or scheduled run) renders <name>-<run>")
    return rendered


__all__ = ["Owner", "Rendered", "RenderError", "render_offline", "render_batch_prediction", "render_feature_view",
           "render_model_deployment", "render_training_job"]
