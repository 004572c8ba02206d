"""model.cache: one PersistentVolumeClaim per (namespace, model URI), filled once by a Job.

- Name: model-cache-<12 hex of sha256(URI)>, so every ModelDeployment of the same URI in a namespace finds
  the same claim; a fromTrainingJob model resolves to a new URI per run (…/run-<n>/), so each run gets its own.
- The fill Job (<claim>-fill) runs the storage initializer once, writing into the claim; replicas mount the
  claim read-only and have no init container.
- Shared, so no single controller: every ModelDeployment using the cache holds it through a ControllerRevision
  of its own (<name>-cache-<hash>, controlled by the ModelDeployment), named as a (non-controller) owner
  reference of the claim and the Job, each under its own field manager so no user's apply removes another's.
  When a ModelDeployment no longer needs a claim (a new URI has rolled out, beyond the previous ones the
  operator configuration keeps, `defaults.modelCachePreviousClaims`) its holder is pruned; when the last
  holder is gone (its ModelDeployment deleted, or pruned), Kubernetes' garbage collector deletes the claim and
  the Job: no TTL, no list of claims to sweep.
- The first user creates them: its size, storageClassName and storage credentials make the claim and the
  Job (both mostly immutable); later users share them as they are.
"""

from __future__ import annotations

import copy
from typing import Any

from ..api import API_VERSION
from ..api.modeldeployment import ModelDeploymentSpec
from ..config import OperatorConfig
from ..labels import MANAGED_BY, MANAGED_BY_LABEL, MODEL_URI_ANNOTATION, PART_OF_LABEL, short_hash
from .common import POD_SECURITY_CONTEXT, Owner
from .serving import storage_initializer

CACHE_LABEL = "mlplatform.dev/model-cache"
COMPONENT = "model-cache"
VOLUME = "model-cache"


def cache_claim_name(uri: str) -> str:
    return f"model-cache-{short_hash(uri, 12)}"


def fill_job_name(uri: str) -> str:
    return f"{cache_claim_name(uri)}-fill"


def cache_field_manager(owner: Owner) -> str:
    """One field manager per user of a cache: its owner reference is its own, applied or removed alone."""
    return f"mlplatform-cache-{owner.uid or owner.name}"


def uses_cache(spec: ModelDeploymentSpec, uri: str | None) -> bool:
    return spec.model.cache is not None and uri is not None and not uri.startswith(("pvc://", "oci://"))


def _metadata(owner: Owner, name: str, uri: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, PART_OF_LABEL: "mlplatform", CACHE_LABEL: short_hash(uri, 12),
                   "app.kubernetes.io/component": COMPONENT},
        "annotations": {MODEL_URI_ANNOTATION: uri},
    }
    if owner.uid:
        meta["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": owner.kind, "name": owner.name,
                                    "uid": owner.uid, "controller": False, "blockOwnerDeletion": False}]
    return meta


def owner_reference_only(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of a cache object a later user applies: its own owner reference."""
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "ownerReferences": meta.get("ownerReferences", [])}}


def render_cache(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig, uri: str) -> list[dict[str, Any]]:
    cache = spec.model.cache
    claim = cache_claim_name(uri)
    pvc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": _metadata(owner, claim, uri),
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": str(cache.size)}}},
    }
    if cache.storage_class_name is not None:
        pvc["spec"]["storageClassName"] = cache.storage_class_name
    fetcher = storage_initializer(spec, config, uri, VOLUME)
    pod: dict[str, Any] = {"restartPolicy": "Never", "securityContext": POD_SECURITY_CONTEXT,
                           "containers": [fetcher],
                           "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": claim}}]}
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    job_meta = _metadata(owner, fill_job_name(uri), uri)
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": job_meta,
        "spec": {"backoffLimit": 3, "template": {"metadata": {"labels": dict(job_meta["labels"])}, "spec": pod}},
    }
    return [pvc, job]


def is_cache_object(obj: dict[str, Any]) -> bool:
    return CACHE_LABEL in (obj["metadata"].get("labels") or {})


HOLDER_KIND = "ControllerRevision"


def holder_name(owner_name: str, uri: str) -> str:
    return f"{owner_name}-cache-{short_hash(uri, 12)}"


def render_holder(owner_metadata: dict[str, Any], owner_name: str, uri: str, revision: int) -> dict[str, Any]:
    """One ModelDeployment's hold on a cache claim: a ControllerRevision it controls, which the claim and its fill
    Job name as an owner. Pruned when the ModelDeployment no longer needs the claim; the garbage collector then
    deletes the claim once no holder (of any ModelDeployment) is left. `revision` orders a resource's claims."""
    meta = copy.deepcopy(owner_metadata)
    meta["name"] = holder_name(owner_name, uri)
    meta["labels"] = {**meta.get("labels", {}), CACHE_LABEL: short_hash(uri, 12)}
    meta["annotations"] = {MODEL_URI_ANNOTATION: uri}
    return {"apiVersion": "apps/v1", "kind": HOLDER_KIND, "metadata": meta,
            "data": {"claim": cache_claim_name(uri), "uri": uri}, "revision": revision}


def held_by(obj: dict[str, Any], holder: dict[str, Any]) -> dict[str, Any]:
    """A cache object (claim, fill Job) owned by a holder instead of the ModelDeployment itself."""
    out = copy.deepcopy(obj)
    out["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": HOLDER_KIND,
                                           "name": holder["metadata"]["name"], "uid": holder["metadata"]["uid"],
                                           "controller": False, "blockOwnerDeletion": False}]
    return out
