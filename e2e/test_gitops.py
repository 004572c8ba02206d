"""GitOps on the local control plane: what Flux's kstatus (the real sigs.k8s.io/cli-utils library) reads from
our status in every state, and syncs of unchanged manifests that change nothing.

The contract (examples/gitops/README.md), for the Ready and Stalled conditions
computed for the resource's current generation (status.observedGeneration == metadata.generation):
  kstatus Current     exactly when Ready is True (a TrainingJob: succeeded, or held by spec.suspend;
                      a suspended ModelDeployment: scaled to zero as asked)
  kstatus Failed      exactly when Stalled is True
  kstatus InProgress  otherwise: just created (status.observedGeneration defaults to 0), converging,
                      degraded, and right after a spec edit until observedGeneration catches up.

Run with `-s` to see the table of states.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from kubernetes import watch
from kubernetes.client.rest import ApiException

import kstatus
from harness import GROUP, PLURALS, VERSION, condition, feature_view_spec, get_cr, resource

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ARGOCD = "argocd-controller"

CPU_MODEL = {
    "model": {"uri": "s3://models/churn/v3/", "format": "sklearn"},
    "runtime": {"preset": "sklearn"},
    "resources": {"cpu": "500m", "memory": "1Gi"},
    "replicas": 1,
}
TRAINING = {"image": "python:3.12", "args": ["--epochs", "1"], "resources": {"cpu": "1", "memory": "1Gi"},
            "backoffLimit": 0, "output": {"uri": "s3://models/gitops/"}}
FROM_TRAINING = {"model": {"fromTrainingJob": "x"}, "runtime": {"preset": "xgboost"}, "replicas": 1}
UNKNOWN_GPU = {"cpu": "1", "memory": "1Gi", "gpu": {"count": 1, "type": "nvidia-b999"}}


# --- our reading of a status, and the expected kstatus verdict --------------------------------------------

def current_generation(body: dict) -> bool:
    return (body.get("status") or {}).get("observedGeneration") == body["metadata"].get("generation")


def is_true(body: dict, type_: str) -> bool:
    return condition(body, type_).get("status") == "True"


def expected_verdict(body: dict) -> str:
    """What the contract says kstatus must read for this object."""
    if not current_generation(body):
        return "InProgress"  # not acted on yet: just created, or a spec edit not observed yet
    if is_true(body, "Stalled"):
        return "Failed"
    return "Current" if is_true(body, "Ready") else "InProgress"


def ready_text(body: dict) -> str:
    ready = condition(body, "Ready")
    if not ready:
        status = body.get("status") or {}
        return f"(none; observedGeneration {status.get('observedGeneration', '-')})"
    text = f"{ready['status']} {ready.get('reason', '')}"
    if not current_generation(body):
        text += f" (for generation {body['status'].get('observedGeneration')} of {body['metadata']['generation']})"
    return text


class StateTable:
    """Named states: the object as the API server returned it, our Ready, kstatus's verdict."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def add(self, state: str, body: dict, expected: str) -> None:
        verdict = kstatus.verdict(body)
        stalled = condition(body, "Stalled")
        self.rows.append((state, f"{body['kind']}/{body['metadata']['name']}", ready_text(body),
                          stalled.get("status", "-"), verdict.status, expected))
        assert expected_verdict(body) == expected, (
            f"{state}: the status does not say what this state should ({expected}): {json.dumps(body.get('status'))}")
        assert verdict.status == expected, f"{state}: kstatus reads {verdict.status} ({verdict.message}), not {expected}"

    def render(self) -> str:
        header = ("state", "resource", "our Ready", "Stalled", "kstatus", "expected")
        widths = [max(len(str(r[i])) for r in [header, *self.rows]) for i in range(len(header))]
        lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in [header, *self.rows]]
        return "\n".join(lines)


# --- every version the API server served, recorded through watches ----------------------------------------

class Recorder:
    """Watches the three kinds in a namespace and keeps every version of every object."""

    def __init__(self, custom, namespace: str):
        self.custom, self.namespace = custom, namespace
        self.versions: dict[tuple[str, str, str], dict] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "Recorder":
        for plural in PLURALS.values():
            # Watch from a listing's resourceVersion: every later change is delivered, none is missed.
            listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
            for obj in listed["items"]:
                self.versions[(obj["kind"], obj["metadata"]["name"], obj["metadata"]["resourceVersion"])] = obj
            thread = threading.Thread(target=self._watch, args=(plural, listed["metadata"]["resourceVersion"]),
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def find(self, kind: str, name: str, predicate) -> dict | None:
        """The first recorded version of that object for which predicate holds."""
        mine = [b for (k, n, _), b in list(self.versions.items()) if (k, n) == (kind, name)]
        return next((b for b in sorted(mine, key=lambda b: int(b["metadata"]["resourceVersion"])) if predicate(b)),
                    None)

    def _watch(self, plural: str, version: str | None) -> None:
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                                              self.namespace, plural, resource_version=version, timeout_seconds=2)
                for event in stream:
                    obj = event["object"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        meta = obj["metadata"]
                        self.versions[(obj["kind"], meta["name"], meta["resourceVersion"])] = obj
                    if event["type"] != "ERROR":
                        version = obj["metadata"]["resourceVersion"]
            except ApiException as err:
                if err.status == 410:
                    version = None  # expired: list again
                else:
                    self.errors.append(f"{plural}: {err.status} {err.reason}")
                    time.sleep(0.5)
            except Exception:  # noqa: BLE001 - the connection was closed under the watch: watch again from where it was
                time.sleep(0.2)


# --- the states -------------------------------------------------------------------------------------------

def apply_ssa(kubectl, manifest: dict, namespace: str) -> dict:
    """Server-side apply as Argo CD does; the API server's response (the object as just written)."""
    result = kubectl.run("apply", "--server-side", f"--field-manager={ARGOCD}", "-n", namespace, "-o", "json",
                         "-f", "-", stdin=yaml.safe_dump(manifest))
    return json.loads(result.stdout)


def wait_body(wait_for, custom, kind: str, namespace: str, name: str, predicate, what: str, timeout: float = 90):
    def check():
        body = get_cr(custom, kind, namespace, name)
        return body if current_generation(body) and predicate(body) else None
    return wait_for(check, timeout=timeout, interval=0.3, what=f"{kind} {name}: {what}")


def reason(body: dict, type_: str = "Ready") -> str:
    return condition(body, type_).get("reason", "")


def test_kstatus_reads_our_status_in_every_state(operator, kubectl, custom, namespace, wait_for):
    table = StateTable()
    md, tj, fv = "ModelDeployment", "TrainingJob", "FeatureView"
    manifests = [
        resource(md, "md-ready", CPU_MODEL),
        resource(md, "md-slow", CPU_MODEL, {"mlplatform.dev/kwok-start-after": "25s"}),
        resource(md, "md-crash", CPU_MODEL, {"mlplatform.dev/kwok-crashloop": "true"}),
        resource(md, "md-gpu", {**CPU_MODEL, "resources": UNKNOWN_GPU}),
        resource(md, "md-suspended", {**CPU_MODEL, "suspend": True}),
        resource(md, "md-waiting", {**FROM_TRAINING, "model": {"fromTrainingJob": "tj-running"}}),
        resource(md, "md-orphaned", {**FROM_TRAINING, "model": {"fromTrainingJob": "tj-fail"}}),
        resource(tj, "tj-ok", TRAINING),
        resource(tj, "tj-running", TRAINING, {"mlplatform.dev/kwok-complete-after": "300s"}),
        resource(tj, "tj-fail", TRAINING, {"mlplatform.dev/kwok-fail": "true", "mlplatform.dev/kwok-exit-code": "3"}),
        resource(tj, "tj-gpu", {**TRAINING, "resources": UNKNOWN_GPU}),
        resource(tj, "tj-held", {**TRAINING, "suspend": True}),
        resource(tj, "tj-queued", {**TRAINING, "queueName": "team-a"}),
        resource(fv, "fv-ok", feature_view_spec()),
        resource(fv, "fv-slow", feature_view_spec(), {"mlplatform.dev/kwok-complete-after": "25s"}),
        resource(fv, "fv-fail", feature_view_spec(), {"mlplatform.dev/kwok-fail": "true",
                                                      "mlplatform.dev/kwok-complete-after": "1s"}),
        resource(fv, "fv-suspended", feature_view_spec(suspend=True)),
    ]
    with Recorder(custom, namespace) as recorder:
        try:
            for manifest in manifests:
                created = apply_ssa(kubectl, manifest, namespace)
                if manifest["metadata"]["name"] in ("md-ready", "tj-ok", "fv-ok"):
                    table.add("just created (apply response)", created, "InProgress")

            def seen(kind, name, predicate, what, timeout=90):
                """The object as it is now, once predicate holds for its current generation."""
                return wait_body(wait_for, custom, kind, namespace, name, predicate, what, timeout)

            def passed(kind, name, predicate, what, timeout=90):
                """A recorded version for which predicate held: states that last seconds are not missed."""
                return wait_for(lambda: recorder.find(kind, name, lambda b: current_generation(b) and predicate(b)),
                                timeout=timeout, interval=0.3, what=f"{kind} {name}: {what}")

            # Converging.
            table.add("converging: pods starting", passed(md, "md-slow", lambda b: reason(b) == "RollingOut",
                                                          "rolling out"), "InProgress")
            table.add("converging: run running", passed(tj, "tj-running", lambda b: b["status"]["phase"] == "Running",
                                                        "running"), "InProgress")
            table.add("converging: materializing",
                      passed(fv, "fv-slow", lambda b: reason(b, "Materialized") == "Materializing", "materializing"),
                      "InProgress")
            table.add("converging: waiting for a TrainingJob's artifact",
                      seen(md, "md-waiting", lambda b: reason(b) == "WaitingForTrainingJob", "WaitingForTrainingJob"),
                      "InProgress")
            # Ready.
            table.add("ready", seen(md, "md-ready", lambda b: is_true(b, "Ready"), "Ready"), "Current")
            table.add("ready (run succeeded)", seen(tj, "tj-ok", lambda b: b["status"]["phase"] == "Succeeded",
                                                    "Succeeded"), "Current")
            table.add("ready (materialized, served)", seen(fv, "fv-ok", lambda b: is_true(b, "Ready"), "Ready"),
                      "Current")
            # Trouble that a controller may still get out of: not Ready, not Stalled.
            table.add("degraded: CrashLoopBackOff",
                      seen(md, "md-crash", lambda b: reason(b) == "CrashLoopBackOff", "CrashLoopBackOff"),
                      "InProgress")
            # Stalled: only a change helps.
            table.add("stalled: unknown GPU type", seen(md, "md-gpu", lambda b: reason(b, "Stalled") == "InvalidSpec",
                                                        "InvalidSpec"), "Failed")
            table.add("stalled: unknown GPU type", seen(tj, "tj-gpu", lambda b: reason(b, "Stalled") == "InvalidSpec",
                                                        "InvalidSpec"), "Failed")
            table.add("stalled: training pod failed", seen(tj, "tj-fail", lambda b: b["status"]["phase"] == "Failed",
                                                           "Failed"), "Failed")
            table.add("stalled: its TrainingJob failed",
                      seen(md, "md-orphaned", lambda b: reason(b, "Stalled") == "TrainingJobFailed", "TrainingJobFailed"),
                      "Failed")
            table.add("stalled: queue without Kueue",
                      seen(tj, "tj-queued", lambda b: reason(b, "Stalled") == "KueueNotInstalled", "KueueNotInstalled"),
                      "Failed")
            # Suspended as asked.
            table.add("suspended (scaled to zero)",
                      seen(md, "md-suspended", lambda b: b["status"]["phase"] == "Suspended", "Suspended"), "Current")
            table.add("suspended (run held)", seen(tj, "tj-held", lambda b: b["status"]["phase"] == "Suspended",
                                                   "Suspended"), "Current")
            table.add("suspended (schedule off)", seen(fv, "fv-suspended", lambda b: is_true(b, "Ready"), "Ready"),
                      "Current")
            # The converging ones arrive.
            table.add("ready after slow start", seen(md, "md-slow", lambda b: is_true(b, "Ready"), "Ready", 120),
                      "Current")
            table.add("ready after slow materialization",
                      seen(fv, "fv-slow", lambda b: is_true(b, "Ready"), "Ready", 120), "Current")

            # A spec edit: InProgress in the apply response itself, until observedGeneration catches up.
            edits = [
                resource(md, "md-ready", {**CPU_MODEL, "replicas": 2}),
                resource(tj, "tj-ok", {**TRAINING, "args": ["--epochs", "2"]}),
                resource(fv, "fv-ok", feature_view_spec(ttl="12h")),
            ]
            for manifest in edits:
                edited = apply_ssa(kubectl, manifest, namespace)
                assert edited["metadata"]["generation"] == 2
                table.add("right after a spec edit (apply response)", edited, "InProgress")
            # Run 2 lasts seconds: taken from the recorded versions rather than polled.
            table.add("spec edit observed, run 2 starting",
                      passed(tj, "tj-ok", lambda b: b["status"].get("run") == 2
                             and b["status"]["phase"] in ("Pending", "Running"), "run 2 started"), "InProgress")
            table.add("spec edit observed, rolling out",
                      passed(md, "md-ready", lambda b: b["metadata"]["generation"] == 2 and not is_true(b, "Ready"),
                             "rolling out to 2 replicas"), "InProgress")
            table.add("spec edit observed, materializing",
                      passed(fv, "fv-ok", lambda b: b["metadata"]["generation"] == 2 and not is_true(b, "Ready"),
                             "materializing the edited view"), "InProgress")
            table.add("ready again after the edit", seen(md, "md-ready", lambda b: is_true(b, "Ready")
                                                         and b["status"]["readyReplicas"] == 2, "2/2"), "Current")
            table.add("ready again after the edit", seen(tj, "tj-ok", lambda b: b["status"]["run"] == 2
                                                         and b["status"]["phase"] == "Succeeded", "run 2 Succeeded"),
                      "Current")
            table.add("ready again after the edit", seen(fv, "fv-ok", lambda b: is_true(b, "Ready"), "Ready"),
                      "Current")

            # A failed materialization: Stalled (Failed), until a later scheduled materialization succeeds.
            failed = seen(fv, "fv-fail", lambda b: reason(b, "Stalled") == "MaterializationFailed",
                          "MaterializationFailed", 150)
            assert "a later successful scheduled materialization or a spec change clears it" in \
                condition(failed, "Stalled")["message"]
            table.add("stalled: materialization failed", failed, "Failed")
            kubectl.run("annotate", "featureview/fv-fail", "-n", namespace, "mlplatform.dev/kwok-fail-")

            def cron_template_healed():
                cron = json.loads(kubectl.run("get", "cronjob/fv-fail-materialize", "-n", namespace, "-o",
                                              "json").stdout)
                pod_meta = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
                return "mlplatform.dev/kwok-fail" not in (pod_meta.get("annotations") or {})
            wait_for(cron_template_healed, timeout=30, what="CronJob template without kwok-fail")
            still = get_cr(custom, fv, namespace, "fv-fail")
            table.add("stalled: still, before a scheduled run", still, "Failed")
            kubectl.run("create", "job", "fv-fail-scheduled", "--from=cronjob/fv-fail-materialize", "-n", namespace)
            table.add("recovered by a scheduled materialization",
                      seen(fv, "fv-fail", lambda b: is_true(b, "Ready"), "Ready", 120), "Current")
            time.sleep(2)  # the last status writes reach the watches
        finally:
            print("\n" + table.render())

    # Every version of every object the API server served meanwhile, not only the named states.
    assert not recorder.errors, recorder.errors
    bodies = list(recorder.versions.values())
    assert len(bodies) >= 3 * len(manifests), f"only {len(bodies)} versions recorded"
    disagreements = []
    for body, verdict in zip(bodies, kstatus.verdicts(bodies), strict=True):
        if verdict.status != expected_verdict(body):
            disagreements.append(f"{body['kind']}/{body['metadata']['name']}@{body['metadata']['resourceVersion']}: "
                                 f"kstatus {verdict.status} ({verdict.message}), expected {expected_verdict(body)}; "
                                 f"Ready {ready_text(body)}, conditions "
                                 f"{[(c['type'], c['status'], c.get('reason')) for c in body['status'].get('conditions', [])]}")
    print(f"kstatus agreed with our status on {len(bodies) - len(disagreements)} of {len(bodies)} recorded versions")
    assert not disagreements, "\n".join(disagreements)


# --- examples/gitops --------------------------------------------------------------------------------------

def test_gitops_definitions_sync_examples_and_not_themselves():
    """No cluster needed: the Argo CD Application and the Flux objects point at examples/, keep examples/gitops/
    out of what they apply, carry the marked placeholder URL, and health-check objects that examples/ holds."""
    gitops = EXAMPLES / "gitops"
    application = yaml.safe_load((gitops / "argocd-application.yaml").read_text())
    flux = {d["kind"]: d for d in yaml.safe_load_all((gitops / "flux.yaml").read_text()) if d}
    placeholder = "https://git.example.com/CHANGE-ME/ml-manifests.git"
    source = application["spec"]["source"]
    assert (application["kind"], source["path"], source["repoURL"]) == ("Application", "examples", placeholder)
    assert source["directory"]["recurse"] is False and "ServerSideApply=true" in application["spec"]["syncPolicy"][
        "syncOptions"]
    assert flux["GitRepository"]["spec"]["url"] == placeholder
    for text in ((gitops / "argocd-application.yaml").read_text(), (gitops / "flux.yaml").read_text()):
        assert "PLACEHOLDER" in text.split(placeholder)[0].splitlines()[-2]  # the line above the URL says so
    kustomization = flux["Kustomization"]["spec"]
    assert kustomization["path"] == "./examples" and kustomization["sourceRef"]["name"] == \
        flux["GitRepository"]["metadata"]["name"]
    ignore = [line for line in flux["GitRepository"]["spec"]["ignore"].splitlines() if not line.startswith("#")]
    assert ignore == ["/*", "!/examples/", "/examples/gitops/"]
    # examples/ itself (what both apply) has no kustomization.yaml that would change what is applied.
    assert not (EXAMPLES / "kustomization.yaml").exists()
    ours = {(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in example_documents()}
    checks = [(c["kind"], c["namespace"], c["name"]) for c in kustomization["healthChecks"]]
    assert checks and set(checks) <= ours and all(c["apiVersion"] == f"{GROUP}/{VERSION}"
                                                  for c in kustomization["healthChecks"])
    assert {kind for kind, _, _ in checks} == {"FeatureView", "ModelDeployment"}
    assert not [d for d in example_documents() if d["apiVersion"].split("/")[0] != GROUP]


# --- no-op syncs ------------------------------------------------------------------------------------------

def example_documents() -> list[dict]:
    return [d for path in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def snapshot(kubectl, custom, namespaces: list[str]) -> dict:
    """Every custom resource's (generation, resourceVersion), every child's resourceVersion."""
    state = {}
    for namespace in namespaces:
        for kind, plural in PLURALS.items():
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
                meta = item["metadata"]
                state[(kind, namespace, meta["name"])] = (meta["generation"], meta["resourceVersion"])
        children = json.loads(kubectl.run(
            "get", "deployments,replicasets,services,horizontalpodautoscalers,poddisruptionbudgets,configmaps,jobs,"
            "cronjobs,pods", "-n", namespace, "-l", "mlplatform.dev/owner", "-o", "json").stdout)["items"]
        for item in children:
            meta = item["metadata"]
            state[(item["kind"], namespace, meta["name"])] = meta["resourceVersion"]
    return state


def changes(before: dict, after: dict) -> list[str]:
    return [f"{key}: {before.get(key)} -> {after.get(key)}" for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)]


def away_from_the_schedule() -> None:
    """driver-stats materializes at */30: a scheduled run would change children while we measure."""
    now = datetime.now(timezone.utc)
    to_boundary = (30 - now.minute % 30) * 60 - now.second
    if to_boundary < 120:
        time.sleep(to_boundary + 20)  # let it run (3 s under kwok) and be recorded


def settled(kubectl, custom, namespaces, wait_for) -> dict:
    """A snapshot that stayed the same for 16 s: longer than the HPA controller's sync period (15 s), the
    slowest periodic writer of our children's status (its first status write comes one period after creation)."""
    last = [snapshot(kubectl, custom, namespaces)]

    def stable():
        time.sleep(16)
        now = snapshot(kubectl, custom, namespaces)
        same, last[0] = now == last[0], now
        return now if same else None
    return wait_for(stable, timeout=180, interval=0, what="objects settled")


EXAMPLE_CACHE_PV = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-gitops-shared-rwx}
spec:
  capacity: {storage: 1000Gi}
  accessModes: [ReadWriteMany]
  storageClassName: shared-rwx
  hostPath: {path: /tmp/e2e-gitops-shared-rwx}
"""


def test_syncing_unchanged_examples_changes_nothing(lws_controller, operator, kubectl, custom, core_v1, wait_for):
    # The multi-node example's model cache: a ReadWriteMany volume of its storage class (no provisioner here).
    kubectl.run("delete", "pv", "e2e-gitops-shared-rwx", "--ignore-not-found", "--wait=true", check=False)
    kubectl.run("apply", "-f", "-", stdin=EXAMPLE_CACHE_PV)
    documents = example_documents()
    namespaces = sorted({d["metadata"]["namespace"] for d in documents})
    assert namespaces == ["assistants", "payments", "research", "risk"]
    created = []
    for namespace in namespaces:
        wait_for(lambda namespace=namespace: _namespace_phase(core_v1, namespace) != "Terminating", timeout=120,
                 what=f"namespace {namespace} not terminating")
        if _namespace_phase(core_v1, namespace) is None:
            core_v1.create_namespace({"metadata": {"name": namespace, "labels": {"mlplatform.dev/e2e": "true"}}})
            created.append(namespace)
    keys = [(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in documents]
    existed = {key for key in keys if _exists(custom, *key)}
    ssa = ["apply", "--server-side", f"--field-manager={ARGOCD}", "-f", str(EXAMPLES)]
    table = StateTable()
    try:
        kubectl.run(*ssa)

        def converged():
            bodies = [get_cr(custom, kind, ns, name) for kind, ns, name in keys]
            done = all(current_generation(b) and (is_true(b, "Ready") or is_true(b, "Stalled")) for b in bodies)
            return bodies if done else None
        bodies = wait_for(converged, timeout=180, interval=1, what="examples converged")
        for body in bodies:
            name = body["metadata"]["name"]
            # The distributed run names a Kueue queue and this cluster has no Kueue: Stalled, as documented.
            # fraud-gated deploys only runs meeting its promotion bounds, and fraud-train's simulated run writes
            # no metrics: Stalled NoQualifyingRun, as documented. chat-llm autoscales with KEDA, which this
            # cluster's session does not run: Stalled KEDANotInstalled.
            stalled = ("llm-finetune", "fraud-gated", "chat-llm")
            table.add("examples/ converged", body, "Failed" if name in stalled else "Current")
        print("\n" + table.render())

        away_from_the_schedule()
        baseline = settled(kubectl, custom, namespaces, wait_for)
        assert len([k for k in baseline if k[0] in PLURALS]) == len(documents)
        assert len(baseline) > 2 * len(documents), "no children found"

        # Argo CD: server-side apply as argocd-controller, twice.
        for _ in range(2):
            out = kubectl.run(*ssa).stdout
            assert out.count("serverside-applied") == len(documents), out
        time.sleep(3)  # whatever the operator would do about it
        assert changes(baseline, snapshot(kubectl, custom, namespaces)) == []
        diff = kubectl.run("diff", "--server-side", f"--field-manager={ARGOCD}", "-f", str(EXAMPLES), check=False)
        assert (diff.returncode, diff.stdout, diff.stderr) == (0, "", "")

        # Client-side apply. The first one adopts the objects (it adds kubectl's last-applied annotation to
        # each custom resource): no spec change, nothing for the operator to do, no child touched.
        kubectl.run("apply", "-f", str(EXAMPLES))
        time.sleep(3)
        adopted = snapshot(kubectl, custom, namespaces)
        print(f"no-op syncs compared {len(baseline)} objects ({len(documents)} custom resources); the first "
              f"client-side apply changed: {changes(baseline, adopted) or 'nothing'}")
        for key, (generation, _) in ((k, v) for k, v in baseline.items() if k[0] in PLURALS):
            assert adopted[key][0] == generation, f"{key}: generation {generation} -> {adopted[key][0]}"
        assert changes({k: v for k, v in baseline.items() if k[0] not in PLURALS},
                       {k: v for k, v in adopted.items() if k[0] not in PLURALS}) == []
        for _ in range(2):
            out = kubectl.run("apply", "-f", str(EXAMPLES)).stdout
            assert out.count("unchanged") == len(documents), out
        time.sleep(3)
        assert changes(adopted, snapshot(kubectl, custom, namespaces)) == []
        for args in (["diff", "-f", str(EXAMPLES)],
                     ["diff", "--server-side", f"--field-manager={ARGOCD}", "-f", str(EXAMPLES)]):
            diff = kubectl.run(*args, check=False)
            assert (diff.returncode, diff.stdout, diff.stderr) == (0, "", ""), " ".join(args)
    finally:
        kubectl.run("delete", "pv", "e2e-gitops-shared-rwx", "--wait=false", check=False)
        for kind, namespace, name in keys:
            if (kind, namespace, name) not in existed and namespace not in created:
                kubectl.run("delete", "--ignore-not-found", "--wait=false", f"{PLURALS[kind]}.{GROUP}/{name}",
                            "-n", namespace, check=False)
        for namespace in created:
            try:
                core_v1.delete_namespace(namespace, propagation_policy="Background")
                core_v1.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
            except ApiException as err:
                if err.status != 404:
                    raise
        for namespace in created:
            wait_for(lambda namespace=namespace: _namespace_phase(core_v1, namespace) is None, timeout=120,
                     what=f"namespace {namespace} deleted")


def _namespace_phase(core_v1, name: str) -> str | None:
    try:
        return core_v1.read_namespace(name).status.phase
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _exists(custom, kind: str, namespace: str, name: str) -> bool:
    try:
        get_cr(custom, kind, namespace, name)
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise
