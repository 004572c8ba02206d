"""FeatureStore -> its Feast repo ConfigMap (feature_store.yaml + the checker) and a connectivity-check Job.

The check Job runs feast_check.py (shipped as text in the ConfigMap) in the Feast image: Feast's own config
classes must accept the rendered feature_store.yaml, then every store must answer. One Job per rendered
configuration (its name carries a hash of it), so a change checks again and an unchanged store is not
re-checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..api.featurestore import FeatureStoreSpec
from ..config import OperatorConfig
from ..labels import STORE_CONFIG_HASH_ANNOTATION as CONFIG_HASH_ANNOTATION
from ..labels import short_hash
from .common import Owner, Rendered, metadata, owner_note, pod_annotations, render_template
from .feast import FEAST_REPO_MOUNT, FEAST_WORK_DIR, FEATURE_STORE_YAML, _copy_repo_script, feature_store_yaml
from .featureview import feast_pod

CHECK_COMPONENT = "store-check"
STORE_REPO_COMPONENT = "feast-store"
CHECK_SCRIPT = "check_stores.py"
CHECK_BACKOFF_LIMIT = 2


def store_project_name(namespace: str, name: str) -> str:
    """The Feast project the check registers nothing in (Feast wants one): `<namespace>__store__<name>`."""
    return f"{namespace}__store__{name}".replace("-", "_").replace(".", "_")


def store_configmap_name(name: str) -> str:
    return f"{name}-feast-store"


def check_job_name(name: str, config_hash: str) -> str:
    return f"{name}-check-{config_hash}"


def check_script() -> str:
    return (Path(__file__).parent / "feast_check.py").read_text()


def store_repo_files(namespace: str, name: str, spec: FeatureStoreSpec, config: OperatorConfig) -> dict[str, str]:
    return {
        FEATURE_STORE_YAML: feature_store_yaml(namespace, name, config.feast, spec,
                                               project=store_project_name(namespace, name)),
        CHECK_SCRIPT: check_script(),
    }


def store_config_hash(spec: FeatureStoreSpec, config: OperatorConfig) -> str:
    """What the check depends on: the stores (Secret references included) and the Feast image."""
    return short_hash({"spec": spec.to_api(), "image": config.feast.image,
                       "keys": config.feast.entity_key_serialization_version}, 10)


def check_command(repo_dir: str = FEAST_REPO_MOUNT, work_dir: str = FEAST_WORK_DIR) -> list[str]:
    script = _copy_repo_script(repo_dir, work_dir) + [f"exec python {CHECK_SCRIPT} ."]
    return ["/bin/sh", "-c", "\n".join(script) + "\n"]


def render_feature_store(owner: Owner, spec: FeatureStoreSpec, config: OperatorConfig,
                         include_check_job: bool = True) -> Rendered:
    """include_check_job: False once the check of this configuration finished and was removed by its TTL."""
    out = Rendered(notes=owner_note(owner))
    out.objects.append(render_template(
        "configmap.yaml.j2",
        metadata=metadata(owner, store_configmap_name(owner.name), STORE_REPO_COMPONENT),
        data=store_repo_files(owner.namespace, owner.name, spec, config),
    ))
    if not include_check_job:
        return out
    config_hash = store_config_hash(spec, config)
    job_meta = metadata(owner, check_job_name(owner.name, config_hash), CHECK_COMPONENT,
                        annotations={CONFIG_HASH_ANNOTATION: config_hash})
    pod_metadata: dict[str, Any] = {"labels": metadata(owner, "", CHECK_COMPONENT)["labels"]}
    if annotations := pod_annotations(owner, config, {}):
        pod_metadata["annotations"] = annotations
    out.objects.append(render_template(
        "job.yaml.j2",
        metadata=job_meta,
        job_spec={
            "backoffLimit": CHECK_BACKOFF_LIMIT,
            "ttlSecondsAfterFinished": config.defaults.materialization_ttl_seconds_after_finished,
            "template": {
                "metadata": pod_metadata,
                "spec": feast_pod(config, store_configmap_name(owner.name), check_command(), None, "spec",
                                  "Never", store=spec),
            },
        },
    ))
    return out
