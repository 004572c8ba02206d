"""ModelDeployment with nodesPerReplica > 1 -> one LeaderWorkerSet (leaderworkerset.x-k8s.io/v1): each
replica is a group of a leader and nodesPerReplica-1 workers, each pod a full GPU node's worth.

The preset declares how a group starts (operator configuration, runtimes.<preset>.multiNode): vllm starts
a Ray head on the leader and serves from it with the Ray executor; workers join the head at
$(LWS_LEADER_ADDRESS), which the LWS controller injects into every container. The Service selects leaders
only (worker-index 0); the HPA scales the LeaderWorkerSet through its scale subresource. A group restarts
as a whole when one of its pods does (RecreateGroupOnPodRestart): a Ray cluster missing a node cannot serve.
"""

from __future__ import annotations

import copy
import shlex
from typing import Any

from ..config import MultiNodeConfig

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LEADER_SELECTOR = {WORKER_INDEX_LABEL: "0"}


def _fill(values: list[str], **fields: str) -> list[str]:
    out = []
    for value in values:
        for key, replacement in fields.items():
            value = value.replace("{" + key + "}", replacement)
        out.append(value)
    return out


def group_pod_specs(pod: dict[str, Any], multi_node: MultiNodeConfig, nodes: int) -> tuple[dict, dict]:
    """The leader's and the workers' pod specs from the single-pod spec: same image, model, GPUs, /dev/shm
    and scheduling; the preset's commands; probes on the leader only (workers serve no HTTP)."""
    leader = copy.deepcopy(pod)
    server = leader["containers"][0]
    args = shlex.join(server.pop("args", []))
    fields = {"args": args, "nodes": str(nodes)}
    server["command"] = _fill(multi_node.leader_command, **fields)
    worker = copy.deepcopy(leader)
    worker_server = worker["containers"][0]
    worker_server["command"] = _fill(multi_node.worker_command, **fields)
    for key in ("readinessProbe", "startupProbe", "livenessProbe", "ports"):
        worker_server.pop(key, None)
    return leader, worker


def render_leader_worker_set(metadata: dict, replicas: int | None, nodes: int, rollout: dict, pod_metadata: dict,
                             pod: dict[str, Any], multi_node: MultiNodeConfig) -> dict[str, Any]:
    leader, worker = group_pod_specs(pod, multi_node, nodes)
    spec: dict[str, Any] = {
        "startupPolicy": "LeaderCreated",
        "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": rollout},
        "leaderWorkerTemplate": {
            "size": nodes,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": {"metadata": copy.deepcopy(pod_metadata), "spec": leader},
            "workerTemplate": {"metadata": copy.deepcopy(pod_metadata), "spec": worker},
        },
    }
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def as_rollout_view(lws: dict | None) -> dict | None:
    """A LeaderWorkerSet read as the Deployment fields the ModelDeployment status uses: replicas, readyReplicas
    and updatedReplicas count whole groups (a group is ready when all its pods are). LWS v0.8 reports no
    observedGeneration (neither in status nor in its conditions): the newest one a condition carries is
    used when there is one, else the object's generation, and a template change still shows as groups not
    yet updated (updatedReplicas < desired)."""
    if lws is None:
        return None
    status = lws.get("status") or {}
    generations = [c["observedGeneration"] for c in status.get("conditions") or [] if "observedGeneration" in c]
    observed = max(generations) if generations else lws["metadata"].get("generation", 0)
    return {"metadata": lws["metadata"], "spec": lws.get("spec") or {},
            "status": {"replicas": status.get("replicas", 0), "readyReplicas": status.get("readyReplicas", 0),
                       "updatedReplicas": status.get("updatedReplicas", 0), "observedGeneration": observed}}


def workload_of(spec) -> tuple[str, str]:
    """(apiVersion, kind) of the object that runs a ModelDeployment's replicas."""
    return (API_VERSION, KIND) if (spec.nodes_per_replica or 1) > 1 else ("apps/v1", "Deployment")
