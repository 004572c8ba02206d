"""Every label and annotation key the operator writes or reads, in one place."""

from __future__ import annotations

import hashlib
import json
from typing import Any

GROUP_PREFIX = "mlplatform.dev/"

# On every child and every pod of ours, "<kind lowercase>.<name>": the watches select on it and the
# cache indexes children by it.
OWNER_LABEL = "mlplatform.dev/owner"
RUN_LABEL = "mlplatform.dev/run"
GENERATION_LABEL = "mlplatform.dev/generation"
# On a canary Deployment, its selector and pods: "canary".
TRACK_LABEL = "mlplatform.dev/track"
# On model pods: "stable" or "canary", which their metrics carry (series of a canary told apart from the rest).
VERSION_LABEL = "mlplatform.dev/version"

COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY = "mlplatform"

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

# The Job controller's label (and annotation) of an Indexed Job's pod index, and its label of the Job's UID.
JOB_COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"

INTENT_HASH_ANNOTATION = "mlplatform.dev/intent-hash"
MODEL_URI_ANNOTATION = "mlplatform.dev/model-uri"
# On a ModelDeployment's Deployments: the hash of the pod template they carry (which version is stable).
TEMPLATE_HASH_ANNOTATION = "mlplatform.dev/template-hash"
RUN_SPEC_HASH_ANNOTATION = "mlplatform.dev/run-spec-hash"
MATERIALIZATION_SPEC_HASH_ANNOTATION = "mlplatform.dev/materialization-spec-hash"
FEAST_REPO_HASH_ANNOTATION = "mlplatform.dev/feast-repo-hash"
FEAST_TAG_NAMESPACE = "mlplatform.dev/namespace"
FEAST_TAG_NAME = "mlplatform.dev/name"

# kubectl's client-side apply copy of the whole object: never read, so never cached.
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def short_hash(value: Any, length: int = 16) -> str:
    """A stable hex digest of any JSON-able value (dict key order does not matter) or of a string."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
