"""The only module that talks to the API server: server-side apply, prune, status, events, lookups."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator
from urllib.parse import quote

import kubernetes

from ..api import API_VERSION, KINDS

FIELD_MANAGER = "mlplatform"
HANDOFF_FIELD_MANAGER = "mlplatform-handoff"
KUEUE_GROUP = "/apis/kueue.x-k8s.io"  # its discovery document names the preferred version (v1beta2 since Kueue 0.15)
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # on the Workload Kueue makes for a Job
GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"
KUEUE_CHECK_SECONDS = 30.0
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
WATCH_READ_MARGIN_SECONDS = 30

# Every kind the operator creates, by (apiVersion, kind) -> plural; the watch list uses it too.
CHILD_KINDS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "ControllerRevision"): "controllerrevisions",  # a canary's stable template (ModelDeployment)
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("batch/v1", "Job"): "jobs",
    ("batch/v1", "CronJob"): "cronjobs",
    # Gateway API: optional, watched when its CRDs are installed (informer.Watched.optional).
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    # Multi-node ModelDeployment replicas (nodesPerReplica > 1); served only where LWS is installed.
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkersets",
    # ModelDeployment autoscaling.engine keda, and prometheus.podMonitors: served only where KEDA and the
    # Prometheus Operator are installed.
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitors",
}
# Objects shared by several resources (model.cache claims): applied and read, never watched or pruned as
# children; each user holds an owner reference and the garbage collector removes them after the last.
SHARED_KINDS: dict[tuple[str, str], str] = {("v1", "PersistentVolumeClaim"): "persistentvolumeclaims"}
# Child kinds whose CRD may be absent: their informers retry until served, without holding the workers back.
OPTIONAL_CHILD_KINDS = {("gateway.networking.k8s.io/v1", "HTTPRoute"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
                        ("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "PodMonitor")}
# Kueue's Workloads, one per queued Job, made and owned by Kueue: watched (never applied or pruned) so that an
# admission or an eviction is reconciled at once. They carry Kueue's job-UID label, not our owner label: the
# watch selects the Workloads of Jobs, and each is mapped to our resource through the Job it is owned by.
KUEUE_WORKLOADS = ("kueue.x-k8s.io/v1beta2", "Workload", "workloads")


# Pending pods explain themselves alike (the same missing node, the same unbound claim): a few tell why.
WARNING_EVENT_PODS = 3
WARNING_EVENTS_PER_POD = 20


class Fenced(RuntimeError):
    """A write refused before it was sent: the process is no longer the leader."""


class KubeError(Exception):
    def __init__(self, status: int, body: str, what: str):
        self.status = status
        self.body = body
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = {}
        if not isinstance(decoded, dict):
            decoded = {}
        self.message = decoded.get("message", body)
        self.causes = [c.get("reason") for c in (decoded.get("details") or {}).get("causes") or []]
        super().__init__(f"{what}: HTTP {status}: {self.message}")

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: nothing can be created in it (the API server's status cause)."""
        return self.status == 403 and NAMESPACE_TERMINATING_CAUSE in self.causes


class WatchExpired(Exception):
    """HTTP 410: the resourceVersion a list or watch started from is no longer available."""


def _collection_path(api_version: str, plural: str, namespace: str | None) -> str:
    """Namespaced collection, or across all namespaces when namespace is None."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{prefix}/{plural}"


def custom_path(kind: str, namespace: str, name: str) -> str:
    return f"{_collection_path(API_VERSION, KINDS[kind].plural, namespace)}/{quote(name)}"


@dataclass
class _Cached:
    value: Any
    at: float


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient):
        self.api_client = api_client
        self._kueue: _Cached | None = None
        self._gateway_api: _Cached | None = None
        self._served: dict[tuple[str, str], _Cached] = {}
        self._lock = threading.Lock()
        self._requests = 0
        self._fenced = False
        self._write_refusal: Callable[[], str | None] = lambda: None
        self.write_round_trip: Callable[[float], None] = lambda seconds: None  # each write's, for the worker pool

    @property
    def requests(self) -> int:
        """API calls made by the reconcilers and the watches, for metrics and benchmarks."""
        with self._lock:
            return self._requests

    def fence(self) -> None:
        """Refuse every later write (a deposed leader): reads still go out, writes raise Fenced."""
        self._fenced = True

    def guard_writes(self, refusal: Callable[[], str | None]) -> None:
        """refusal() is asked before every write: a reason refuses it (the leader's lease is not current)."""
        self._write_refusal = refusal

    def _send(self, method: str, path: str, query: dict | None, body: Any, content_type: str, timeout):
        if method != "GET":
            reason = "this operator lost its lease and writes nothing more" if self._fenced else self._write_refusal()
            if reason:
                raise Fenced(f"{method} {path}: {reason}")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, body, post = self.api_client.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=["BearerToken"])
        with self._lock:
            self._requests += 1
        return self.api_client.call_api(method, url, header_params=headers, body=body, post_params=post,
                                        _request_timeout=timeout)

    def _request(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
                 content_type: str = "application/json") -> dict | None:
        started = time.monotonic()
        response = self._send(method, path, query, body, content_type, 30)
        data = response.read()
        if method != "GET":
            self.write_round_trip(time.monotonic() - started)
        if response.status == 404:
            return None
        if response.status >= 400:
            raise KubeError(response.status, data.decode() if isinstance(data, bytes) else str(data), f"{method} {path}")
        return json.loads(data) if data else {}

    def apply(self, obj: dict, field_manager: str = FIELD_MANAGER) -> dict:
        """Server-side apply of our whole intent; force takes fields back from anyone who edited them.
        field_manager: another manager for what several resources share (a model cache's owner references)."""
        kind_key = (obj["apiVersion"], obj["kind"])
        plural = CHILD_KINDS.get(kind_key) or SHARED_KINDS[kind_key]
        meta = obj["metadata"]
        path = f"{_collection_path(obj['apiVersion'], plural, meta['namespace'])}/{quote(meta['name'])}"
        result = self._request("PATCH", path, query={"fieldManager": field_manager, "force": "true"}, body=obj,
                               content_type="application/apply-patch+yaml")
        if result is None:
            raise KubeError(404, "namespace or resource type not found", f"apply {obj['kind']} {meta['name']}")
        return result

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a child (its dependents in the background). uid: only that incarnation of it; a newer one
        of the same name is left alone."""
        plural = CHILD_KINDS[(api_version, kind)]
        path = f"{_collection_path(api_version, plural, namespace)}/{quote(name)}"
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._request("DELETE", path, body=body)
        except KubeError as err:
            if not (uid and err.status == 409):
                raise

    def hand_over(self, api_version: str, kind: str, namespace: str, name: str, spec: dict,
                  force: bool = True) -> bool:
        """Apply a few spec fields under a second field manager (an apply owns what it sets even when the
        value is unchanged). When our own intent then stops carrying them, they keep their value instead
        of being reset to the API default, for their new owner (the HPA, Kueue) to take over.
        Without force, a field someone else already changed is left to them (returns False)."""
        path = f"{_collection_path(api_version, CHILD_KINDS[(api_version, kind)], namespace)}/{quote(name)}"
        intent = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace},
                  "spec": spec}
        try:
            self._request("PATCH", path, query={"fieldManager": HANDOFF_FIELD_MANAGER, "force": str(force).lower()},
                          body=intent, content_type="application/apply-patch+yaml")
        except KubeError as err:
            if err.status == 409 and not force:
                return False
            raise
        return True

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        """One child (or shared object), read from the API server (None when it does not exist)."""
        plural = CHILD_KINDS.get((api_version, kind)) or SHARED_KINDS[(api_version, kind)]
        return self._request("GET", f"{_collection_path(api_version, plural, namespace)}/{quote(name)}")

    def list_page(self, api_version: str, plural: str, namespace: str | None, label_selector: str | None,
                  continue_token: str | None, limit: int) -> dict:
        query = {"limit": str(limit)}
        if label_selector:
            query["labelSelector"] = label_selector
        if continue_token:
            query["continue"] = continue_token
        try:
            page = self._request("GET", _collection_path(api_version, plural, namespace), query=query)
        except KubeError as err:
            if err.status == 410:
                raise WatchExpired(err.message) from err
            raise
        if page is None:  # the kind is not served (CRDs not installed yet): not synced, retried
            raise KubeError(404, f"{api_version} {plural} is not served by this API server", f"list {plural}")
        return page

    def watch(self, api_version: str, plural: str, namespace: str | None, label_selector: str | None,
              resource_version: str, timeout_seconds: int) -> Iterator[dict]:
        """Watch events from resource_version on, bookmarks included, until the server ends the watch.
        Raises WatchExpired when that version is too old (HTTP 410, before or during the stream)."""
        query = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": resource_version,
                 "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            query["labelSelector"] = label_selector
        response = self._send("GET", _collection_path(api_version, plural, namespace), query, None,
                              "application/json", (10, timeout_seconds + WATCH_READ_MARGIN_SECONDS))
        raw = response.response
        try:
            if response.status == 410:
                raise WatchExpired(raw.read().decode(errors="replace"))
            if response.status >= 400:
                raise KubeError(response.status, raw.read().decode(errors="replace"), f"watch {plural}")
            for line in _lines(raw.stream(amt=None, decode_content=True)):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(status.get("message", "resource version too old"))
                    raise KubeError(status.get("code", 500), json.dumps(status), f"watch {plural}")
                yield event
        finally:
            raw.release_conn()

    def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict | None:
        """Merge-patch of the status subresource: keys set to None are removed."""
        return self._request("PATCH", custom_path(kind, namespace, name) + "/status", body={"status": status},
                             content_type="application/merge-patch+json")

    def list_pods(self, namespace: str, label_selector: str) -> list[dict]:
        """Pods as the API server holds them now (not as a watch delivered them so far)."""
        result = self._request("GET", _collection_path("v1", "pods", namespace),
                               query={"labelSelector": label_selector}) or {}
        return [{"apiVersion": "v1", "kind": "Pod", **pod} for pod in result.get("items") or []]

    def get_pvc(self, namespace: str, name: str) -> dict | None:
        return self._request("GET", f"/api/v1/namespaces/{quote(namespace)}/persistentvolumeclaims/{quote(name)}")

    def warning_events(self, namespace: str, pod_names: list[str]) -> dict[str, list[dict]]:
        """Warning events of the given pods (at most WARNING_EVENT_PODS of them, the first named), each pod's
        read by a field selector: never every Warning of the namespace."""
        by_pod: dict[str, list[dict]] = {}
        for pod in pod_names[:WARNING_EVENT_PODS]:
            selector = f"type=Warning,involvedObject.kind=Pod,involvedObject.name={pod}"
            result = self._request("GET", f"/api/v1/namespaces/{quote(namespace)}/events",
                                   query={"fieldSelector": selector, "limit": str(WARNING_EVENTS_PER_POD)}) or {}
            if result.get("items"):
                by_pod[pod] = result["items"]
        return by_pod

    def _kueue_api(self) -> str | None:
        """/apis/kueue.x-k8s.io/<preferred version>, or None without Kueue (re-read every 30 s)."""
        with self._lock:
            if self._kueue and time.monotonic() - self._kueue.at < KUEUE_CHECK_SECONDS:
                return self._kueue.value
        group = self._request("GET", KUEUE_GROUP)
        version = ((group or {}).get("preferredVersion") or {}).get("groupVersion")
        api = f"/apis/{version}" if version else None
        with self._lock:
            self._kueue = _Cached(api, time.monotonic())
        return api

    def kueue_installed(self) -> bool:
        return self._kueue_api() is not None

    def gateway_api_installed(self) -> bool:
        """Whether gateway.networking.k8s.io/v1 (HTTPRoute) is served; cached like kueue_installed."""
        with self._lock:
            if self._gateway_api and time.monotonic() - self._gateway_api.at < KUEUE_CHECK_SECONDS:
                return self._gateway_api.value
        resources = self._request("GET", GATEWAY_API) or {}
        installed = any(r.get("name") == "httproutes" for r in resources.get("resources") or [])
        with self._lock:
            self._gateway_api = _Cached(installed, time.monotonic())
        return installed

    def api_served(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves this resource (its CRD is installed): discovery of the group version,
        cached like kueue_installed, so that a CRD installed later is seen within KUEUE_CHECK_SECONDS."""
        key = (api_version, plural)
        with self._lock:
            cached = self._served.get(key)
            if cached and time.monotonic() - cached.at < KUEUE_CHECK_SECONDS:
                return cached.value
        resources = self._request("GET", f"/apis/{api_version}") or {}
        served = any(r.get("name") == plural for r in resources.get("resources") or [])
        with self._lock:
            self._served[key] = _Cached(served, time.monotonic())
        return served

    def local_queue_exists(self, namespace: str, queue_name: str) -> bool:
        api = self._kueue_api()
        return api is not None and self._request(
            "GET", f"{api}/namespaces/{quote(namespace)}/localqueues/{quote(queue_name)}") is not None

    def workload_of_job(self, namespace: str, job_uid: str) -> dict | None:
        """Kueue's Workload for a Job (it carries the Job's UID as a label), or None."""
        api = self._kueue_api()
        if api is None:
            return None
        result = self._request("GET", f"{api}/namespaces/{quote(namespace)}/workloads",
                               query={"labelSelector": f"{KUEUE_JOB_UID_LABEL}={job_uid}"}) or {}
        items = result.get("items") or []
        return items[0] if items else None

    def post_event(self, owner: dict, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the custom resource, shown by kubectl describe."""
        meta = owner["metadata"]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "mlplatform-operator"},
            "reportingComponent": "mlplatform.dev/operator",
            "reportingInstance": "mlplatform-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._request("POST", f"/api/v1/namespaces/{quote(meta['namespace'])}/events", body=event)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Newline-delimited JSON out of arbitrary chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def make_api_client(pool_size: int, user_agent: str | None = None) -> kubernetes.client.ApiClient:
    """From KUBECONFIG (or ~/.kube/config), else in-cluster; pool sized for the worker threads and the
    watches. The user agent names this operator instance in the API server's audit log."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    client = kubernetes.client.ApiClient(configuration)
    if user_agent:
        client.user_agent = user_agent
    return client
