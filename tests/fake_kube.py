"""An in-memory stand-in for kube.Kube, for reconcilers tested against plain dicts.

It keeps objects keyed (apiVersion, kind, namespace, name) and records every call as
Call(method, kind, name, detail). Apply is a simplified server-side apply: ownership is tracked per field
manager at the granularity of top-level spec fields, which is what the reconcilers' decisions read
(spec.replicas, spec.suspend). A field its applier stops sending is removed unless another manager owns
it, then defaulted as the API server would.
"""

from __future__ import annotations

import copy
import json
from typing import Any, NamedTuple

from mlplatform.api import API_VERSION
from mlplatform.config import OperatorConfig
from mlplatform.controllers.base import Context
from mlplatform.metrics import Metrics
from mlplatform.runtime.cache import Cache
from mlplatform.runtime.kube import FIELD_MANAGER, HANDOFF_FIELD_MANAGER, KubeError
from mlplatform.runtime.workqueue import WorkQueue

Key = tuple[str, str, str | None, str]
SPEC_DEFAULTS = {("apps/v1", "Deployment"): {"replicas": 1}, ("batch/v1", "Job"): {"suspend": False}}
# Spec fields the API server refuses to change once the object exists (HTTP 422 "field is immutable"); it lets
# a suspended Job that never started change its template's scheduling directives, the fake refuses that too.
IMMUTABLE_SPEC = {("batch/v1", "Job"): ("template", "podFailurePolicy", "completionMode", "selector")}
CREATION_TIMESTAMP = "2026-11-25T12:00:00Z"


class Call(NamedTuple):
    method: str
    kind: str
    name: str
    detail: Any = None


def kube_error(status: int, message: str = "", cause: str | None = None) -> KubeError:
    body = {"kind": "Status", "code": status, "message": message or f"HTTP {status}"}
    if cause:
        body["details"] = {"causes": [{"reason": cause, "message": message}]}
    return KubeError(status, json.dumps(body), "fake")


def namespace_terminating() -> KubeError:
    return kube_error(403, "namespace team is being terminated", "NamespaceTerminating")


def _merge_patch(target: dict, patch: dict) -> dict:
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_patch(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class FakeKube:
    def __init__(self, kueue_installed: bool = True, local_queues: tuple[tuple[str, str], ...] = ()):
        self.objects: dict[Key, dict] = {}
        self.calls: list[Call] = []
        self.events: list[dict] = []
        self.pvcs: dict[tuple[str, str], dict] = {}
        self.pod_events: dict[str, list[dict]] = {}
        self.kueue = kueue_installed
        self.gateway_api = True
        self.unserved: set[tuple[str, str]] = set()  # (apiVersion, plural) whose CRD is not installed
        self.local_queues = set(local_queues)
        self.workloads: dict[str, dict] = {}  # Kueue Workloads by the UID of their Job
        self._failures: dict[tuple[str, str, str], KubeError] = {}
        self._owners: dict[Key, dict[str, set[str]]] = {}
        self._version = 0
        self._uids = 0
        self._written: list[Key] = []  # objects written since the last drain_written()

    # -- test controls ---------------------------------------------------------------------------

    def fail(self, method: str, kind: str, name: str, error: KubeError) -> None:
        """Raise error on every later call of method for that object."""
        self._failures[(method, kind, name)] = error

    def put(self, obj: dict, owners: dict[str, set[str]] | None = None) -> dict:
        """Store an object as it is (a custom resource, a pod, a child made elsewhere). Spec field ownership
        comes from owners, else from the object's managedFields."""
        obj = copy.deepcopy(obj)
        key = self._key(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", self._next_uid())
        meta.setdefault("generation", 1)
        before = self.objects.get(key)
        if before is not None and before.get("spec") != obj.get("spec"):  # as the API server does
            meta["generation"] = before["metadata"].get("generation", 1) + 1
        meta.setdefault("creationTimestamp", CREATION_TIMESTAMP)
        meta["resourceVersion"] = self._next_version()
        if owners is None and meta.get("managedFields"):
            owners = {entry["manager"]: {f[2:] for f in (entry.get("fieldsV1") or {}).get("f:spec") or {}}
                      for entry in meta["managedFields"]}
        if owners is not None:
            self._owners[key] = {m: set(f) for m, f in owners.items()}
        self.objects[key] = obj
        self._render_managed_fields(key)
        return copy.deepcopy(obj)

    def update(self, api_version: str, kind: str, namespace: str, name: str, *, manager: str,
               spec: dict | None = None, status: dict | None = None) -> dict:
        """An update by another client (the HPA, Kueue, a controller writing status): the spec fields it
        changes become its own."""
        key = (api_version, kind, namespace, name)
        obj = self.objects[key]
        if spec:
            owners = self._owners.setdefault(key, {})
            for field, value in spec.items():
                if obj.setdefault("spec", {}).get(field) != value:
                    for fields in owners.values():
                        fields.discard(field)
                owners.setdefault(manager, set()).add(field)
                obj["spec"][field] = copy.deepcopy(value)
            obj["metadata"]["generation"] += 1
        if status is not None:
            obj["status"] = _merge_patch(obj.get("status") or {}, status)
        obj["metadata"]["resourceVersion"] = self._next_version()
        self._render_managed_fields(key)
        return copy.deepcopy(obj)

    def stored(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        obj = self.objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def drain_written(self) -> list[tuple[str, dict | None, Key]]:
        """What a watch would deliver for the writes made since the last call: (kind, object now or None when
        deleted, key), in write order, each object once."""
        keys = list(dict.fromkeys(self._written))
        self._written.clear()
        return [(key[1], self.stored(*key), key) for key in keys]

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method in ("apply", "delete", "hand_over", "patch_status", "post_event")]

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # -- kube.Kube's methods ---------------------------------------------------------------------

    def apply(self, obj: dict, field_manager: str = FIELD_MANAGER) -> dict:
        meta = obj["metadata"]
        self._record("apply", obj["kind"], meta["name"], copy.deepcopy(obj))
        applied = self._apply(obj, field_manager)
        self._written.append(self._key(applied))
        return applied

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        self._record("delete", kind, name, {"uid": uid})
        key = (api_version, kind, namespace, name)
        self._written.append(key)
        if uid and key in self.objects and self.objects[key]["metadata"].get("uid") != uid:
            return  # the precondition: another incarnation of the name is left alone
        self.objects.pop(key, None)
        self._owners.pop(key, None)

    def hand_over(self, api_version: str, kind: str, namespace: str, name: str, spec: dict,
                  force: bool = True) -> bool:
        self._record("hand_over", kind, name, {"spec": copy.deepcopy(spec), "force": force})
        key = (api_version, kind, namespace, name)
        if key not in self.objects:
            raise kube_error(422, f"{kind} {name}: a partial apply cannot create the object")
        if not force and self._conflicts(key, HANDOFF_FIELD_MANAGER, spec):
            return False
        self._apply({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace},
                     "spec": spec}, HANDOFF_FIELD_MANAGER)
        self._written.append(key)
        return True

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        self._record("get", kind, name)
        return self.stored(api_version, kind, namespace, name)

    def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict | None:
        self._record("patch_status", kind, name, copy.deepcopy(status))
        obj = self.objects.get((API_VERSION, kind, namespace, name))
        if obj is None:
            return None
        obj["status"] = _merge_patch(obj.get("status") or {}, status)
        obj["metadata"]["resourceVersion"] = self._next_version()
        self._written.append((API_VERSION, kind, namespace, name))
        return copy.deepcopy(obj)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict]:
        self._record("list_pods", "Pod", namespace, label_selector)
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        return [copy.deepcopy(obj) for (api_version, kind, ns, _), obj in self.objects.items()
                if (api_version, kind, ns) == ("v1", "Pod", namespace)
                and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]

    def get_pvc(self, namespace: str, name: str) -> dict | None:
        self._record("get_pvc", "PersistentVolumeClaim", name)
        return copy.deepcopy(self.pvcs.get((namespace, name)))

    def warning_events(self, namespace: str, pod_names: list[str]) -> dict[str, list[dict]]:
        self._record("warning_events", "Event", namespace, list(pod_names))
        return {p: copy.deepcopy(self.pod_events[p]) for p in pod_names if p in self.pod_events}

    def gateway_api_installed(self) -> bool:
        self._record("gateway_api_installed", "APIGroup", "gateway.networking.k8s.io")
        return self.gateway_api

    def api_served(self, api_version: str, plural: str) -> bool:
        self._record("api_served", "APIGroup", f"{api_version}/{plural}")
        return (api_version, plural) not in self.unserved

    def kueue_installed(self) -> bool:
        self._record("kueue_installed", "APIGroup", "kueue.x-k8s.io")
        return self.kueue

    def local_queue_exists(self, namespace: str, queue_name: str) -> bool:
        self._record("local_queue_exists", "LocalQueue", queue_name)
        return (namespace, queue_name) in self.local_queues

    def workload_of_job(self, namespace: str, job_uid: str) -> dict | None:
        self._record("workload_of_job", "Workload", job_uid)
        return copy.deepcopy(self.workloads.get(job_uid))

    def post_event(self, owner: dict, type_: str, reason: str, message: str) -> None:
        self._record("post_event", owner["kind"], owner["metadata"]["name"], (type_, reason))
        self.events.append({"involvedObject": {"kind": owner["kind"], "name": owner["metadata"]["name"]},
                            "type": type_, "reason": reason, "message": message})

    # -- internals -------------------------------------------------------------------------------

    def _record(self, method: str, kind: str, name: str, detail: Any = None) -> None:
        self.calls.append(Call(method, kind, name, detail))
        error = self._failures.get((method, kind, name))
        if error is not None:
            raise error

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _next_uid(self) -> str:
        self._uids += 1
        return f"uid-{self._uids}"

    @staticmethod
    def _key(obj: dict) -> Key:
        meta = obj["metadata"]
        return obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]

    def _conflicts(self, key: Key, manager: str, spec: dict) -> bool:
        live = self.objects[key].get("spec") or {}
        return any(field in fields and live.get(field) != value
                   for other, fields in self._owners.get(key, {}).items() if other != manager
                   for field, value in spec.items())

    def _apply(self, intent: dict, manager: str) -> dict:
        """A forced apply: fields set to a new value are taken from their other owners."""
        key = self._key(intent)
        intent = copy.deepcopy(intent)
        existing = self.objects.get(key)
        owners = self._owners.setdefault(key, {})
        spec_fields = set(intent.get("spec") or {})
        if existing is None:
            obj = {"apiVersion": intent["apiVersion"], "kind": intent["kind"],
                   "metadata": {"uid": self._next_uid(), "generation": 1, "creationTimestamp": CREATION_TIMESTAMP}}
            before_spec = None
        else:
            merged = self._merge_template_metadata_of_unstarted_job(existing, intent)
            self._refuse_immutable_changes(existing, intent if merged is None else {**merged, "spec": {
                k: v for k, v in merged["spec"].items() if k != "template"}})
            intent = merged or intent
            obj = copy.deepcopy(existing)
            before_spec = copy.deepcopy(obj.get("spec"))
        meta = obj["metadata"]
        for k, v in intent["metadata"].items():
            if k in ("labels", "annotations"):
                meta[k] = {**(meta.get(k) or {}), **v}
            else:
                meta[k] = v
        for k, v in intent.items():
            if k not in ("apiVersion", "kind", "metadata", "spec", "status"):
                obj[k] = v
        if "spec" in intent or owners.get(manager):
            spec = obj.setdefault("spec", {})
            for other, fields in owners.items():
                if other != manager:
                    fields -= {f for f in spec_fields if spec.get(f) != intent["spec"][f]}
            for field in owners.get(manager, set()) - spec_fields:
                if not any(field in f for m, f in owners.items() if m != manager):
                    spec.pop(field, None)
            spec.update(intent.get("spec") or {})
            for field, value in SPEC_DEFAULTS.get((intent["apiVersion"], intent["kind"]), {}).items():
                spec.setdefault(field, value)
            owners[manager] = spec_fields
        if existing is not None and obj.get("spec") != before_spec:
            meta["generation"] = meta.get("generation", 1) + 1
        meta["resourceVersion"] = self._next_version()
        self.objects[key] = obj
        self._render_managed_fields(key)
        return copy.deepcopy(obj)

    @staticmethod
    def _merge_template_metadata_of_unstarted_job(existing: dict, intent: dict) -> dict | None:
        """A suspended Job that never started takes changes of its pod template's labels and annotations (the
        API server's mutable scheduling directives): an intent whose template carries only metadata is merged
        into the live template, as server-side apply merges it (None: not such an intent)."""
        wanted = (intent.get("spec") or {}).get("template")
        live = existing.get("spec") or {}
        if intent["kind"] != "Job" or wanted is None or set(wanted) != {"metadata"} or not live.get("suspend") \
                or (existing.get("status") or {}).get("startTime"):
            return None
        template = copy.deepcopy(live["template"])
        for k, v in wanted["metadata"].items():
            template.setdefault("metadata", {})[k] = {**(template["metadata"].get(k) or {}), **v}
        return {**intent, "spec": {**intent["spec"], "template": template}}

    @staticmethod
    def _refuse_immutable_changes(existing: dict, intent: dict) -> None:
        live, wanted = existing.get("spec") or {}, intent.get("spec") or {}
        for field in IMMUTABLE_SPEC.get((intent["apiVersion"], intent["kind"]), ()):
            if field in wanted and wanted[field] != live.get(field):
                raise kube_error(422, f"{intent['kind']}.batch \"{intent['metadata']['name']}\" is invalid: "
                                      f"spec.{field}: field is immutable")

    def _render_managed_fields(self, key: Key) -> None:
        owners = self._owners.get(key)
        if owners is None:
            return
        self.objects[key]["metadata"]["managedFields"] = [
            {"manager": manager,
             "operation": "Apply" if manager in (FIELD_MANAGER, HANDOFF_FIELD_MANAGER) else "Update",
             "apiVersion": key[0], "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {f"f:{f}": {} for f in sorted(fields)}}}
            for manager, fields in sorted(owners.items()) if fields]


def make_context(kube: FakeKube | None = None, clock=None) -> Context:
    return Context(kube=kube or FakeKube(), cache=Cache(managers=(FIELD_MANAGER, HANDOFF_FIELD_MANAGER)),
                   config=OperatorConfig(), queue=WorkQueue(clock) if clock else WorkQueue(), metrics=Metrics())


def deliver_writes(ctx: Context, kube: FakeKube) -> None:
    """What the informers would deliver of the writes made so far (the reconcilers never write the cache)."""
    for kind, obj, key in kube.drain_written():
        if obj is None:
            ctx.cache.remove(kind, {"metadata": {"namespace": key[2], "name": key[3]}})
        else:
            ctx.cache.upsert(kind, obj)


def sync(ctx: Context, kube: FakeKube) -> None:
    """What the informers would have delivered: the cache replaced by the fake API's content, per kind."""
    by_kind: dict[str, list[dict]] = {}
    for (_, kind, _, _), obj in kube.objects.items():
        by_kind.setdefault(kind, []).append(copy.deepcopy(obj))
    for kind in set(by_kind) | set(ctx.cache.counts()):
        ctx.cache.replace(kind, by_kind.get(kind, []))
