"""The control loop through restarts, lost watches, leader changes and chaos, on the local control plane.

Each test runs operators of its own, scoped to its namespace (`--namespace`), while the shared one is
stopped. Writes are counted from the API server's audit log, never from the operator's own metrics.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from kubernetes.client.rest import ApiException

from audit import AuditLog, summary
from harness import GROUP, PLURALS, ROOT, VERSION, Operator, condition, get_cr, resource

pytestmark = pytest.mark.usefixtures("crds", "no_session_operator")

CPU_MODEL = {
    "model": {"uri": "s3://models/churn/v3/"},
    "runtime": {"preset": "sklearn"},
    "resources": {"cpu": "100m", "memory": "128Mi"},
    "replicas": 1,
}
AUTOSCALED_MODEL = {**{k: v for k, v in CPU_MODEL.items() if k != "replicas"},
                    "autoscaling": {"minReplicas": 1, "maxReplicas": 10, "targets": {"cpuUtilization": 80}}}
LEASE = ("--leader-elect-lease-duration", "8", "--leader-elect-renew-deadline", "5",
         "--leader-elect-retry-period", "1")


@pytest.fixture
def audit(local_cluster) -> AuditLog:
    return AuditLog(local_cluster.audit_log)


@pytest.fixture
def start_operator(kubeconfig, operator_config, namespace, request):
    started: list[Operator] = []

    def start(identity: str, *args: str, wait_ready: bool = True) -> Operator:
        log = ROOT / ".run" / f"e2e-{request.node.name[:40]}-{identity}.log"
        process = Operator(kubeconfig, log, ("--namespace", namespace, *args), identity=identity)
        process.start(operator_config, wait_ready=wait_ready)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def metric(op: Operator, name: str, labels: str | None = None) -> float:
    """The sum over the series of name, or the one series with exactly these labels ('{k="v",...}')."""
    text = op.metrics()
    labels_pattern = r"(?:\{[^}]*\})?" if labels is None else re.escape(labels)
    pattern = re.compile(rf"^{re.escape(name)}{labels_pattern}\s+([0-9.e+-]+)$", re.M)
    return sum(float(m) for m in pattern.findall(text))


def apply_all(kubectl, docs: list[dict], namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))


def controller_uid(child) -> str | None:
    return next((ref.uid for ref in child.metadata.owner_references or [] if ref.controller), None)


def describe_child(child) -> str:
    meta = child.metadata
    refs = ", ".join(f"{r.kind}/{r.name} uid={r.uid} controller={r.controller}" for r in meta.owner_references or [])
    return (f"{child.kind or type(child).__name__} {meta.name} created {meta.creation_timestamp} "
            f"owner label {(meta.labels or {}).get('mlplatform.dev/owner')} owners [{refs}] managers "
            f"{[(m.manager, m.operation, str(m.time)) for m in meta.managed_fields or []]}")


def list_crs(custom, kind: str, namespace: str) -> list[dict]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind])["items"]


def all_ready(custom, namespace: str, kind: str = "ModelDeployment", expected: int | None = None) -> bool:
    items = list_crs(custom, kind, namespace)
    if expected is not None and len(items) != expected:
        return False
    return all(condition(b, "Ready").get("status") == "True"
               and (b.get("status") or {}).get("observedGeneration") == b["metadata"]["generation"] for b in items)


def test_a_restart_over_existing_state_writes_nothing(start_operator, kubectl, custom, namespace, apps_v1, batch_v1,
                                                      audit, wait_for):
    first = start_operator("restart-1")
    autoscaled = [f"auto-{i}" for i in range(10)]
    models = [resource("ModelDeployment", name, AUTOSCALED_MODEL) for name in autoscaled] + \
        [resource("ModelDeployment", f"fixed-{i}", CPU_MODEL) for i in range(40)]
    queued = resource("TrainingJob", "admitted", {"image": "python:3.12", "queueName": "team-a"},
                      {"mlplatform.dev/kwok-complete-after": "600s"})
    apply_all(kubectl, [*models, queued], namespace)
    wait_for(lambda: all_ready(custom, namespace, expected=50), timeout=180, what="50 ModelDeployments Ready")
    wait_for(lambda: batch_v1.read_namespaced_job("admitted-1", namespace), timeout=30, what="the run's Job")
    # What an HPA and Kueue do, under field managers of their own.
    for name in autoscaled:
        kubectl.run("scale", f"deployment/{name}", "-n", namespace, "--replicas=5")
    kubectl.run("patch", "job/admitted-1", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}',
                "--field-manager=kueue-admission")
    wait_for(lambda: get_cr(custom, "TrainingJob", namespace, "admitted")["status"].get("phase") == "Running",
             timeout=60, what="the admitted run Running")
    wait_for(lambda: all_ready(custom, namespace, expected=50), timeout=120, what="scaled models Ready again")

    def statuses_caught_up() -> bool:
        """Every status shows its Deployment's replica counts (progress alone is written at most every 5 s)."""
        deployments = {d.metadata.name: d.status for d in apps_v1.list_namespaced_deployment(namespace).items}
        return all((b.get("status") or {}).get("readyReplicas") == (deployments[b["metadata"]["name"]].ready_replicas or 0)
                   and (b.get("status") or {}).get("replicas") == (deployments[b["metadata"]["name"]].replicas or 0)
                   for b in list_crs(custom, "ModelDeployment", namespace))
    wait_for(statuses_caught_up, timeout=60, what="every status caught up with its Deployment")
    time.sleep(3)  # let the last events land before counting

    first.stop()
    since = audit.offset()
    restarted_at = time.monotonic()
    second = start_operator("restart-2")
    ready_after = time.monotonic() - restarted_at
    time.sleep(30)

    writes = audit.writes(since, namespace)
    print(f"\nrestart: ready (caches synced) {ready_after:.1f}s after start; writes in the 30 s after: "
          f"{len(writes)} {summary(writes)}; reconciles {metric(second, 'mlplatform_reconcile_total')}")
    assert writes == [], f"writes after a restart: {summary(writes)}"
    assert metric(second, "mlplatform_reconcile_total") >= 51  # it did look at every resource
    for name in autoscaled:
        assert apps_v1.read_namespaced_deployment(name, namespace).spec.replicas == 5
    job = batch_v1.read_namespaced_job("admitted-1", namespace)
    assert job.spec.suspend is False and (job.status.active or 0) == 1


def test_a_child_deleted_during_a_watch_gap_is_created_again(start_operator, kubectl, custom, namespace, core_v1,
                                                             local_cluster, wait_for):
    op = start_operator("gap")
    kubectl.apply(resource("ModelDeployment", "gap", CPU_MODEL), namespace)
    wait_for(lambda: all_ready(custom, namespace, expected=1), timeout=60, what="model Ready")
    service_uid = core_v1.read_namespaced_service("gap", namespace).metadata.uid
    relists_before = metric(op, "mlplatform_informer_relists_total", '{kind="Service",reason="expired"}')

    os.kill(op.process.pid, signal.SIGSTOP)  # the operator sees nothing from here on
    try:
        local_cluster.restart_apiserver()  # every watch is cut; the new watch cache starts after them
        kubectl.run("delete", "service/gap", "-n", namespace)  # no watch is open to carry this
        local_cluster.compact_etcd()  # and etcd forgets it
    finally:
        os.kill(op.process.pid, signal.SIGCONT)

    def recreated():
        try:
            service = core_v1.read_namespaced_service("gap", namespace)
        except ApiException:
            return None
        return service if service.metadata.uid != service_uid else None
    wait_for(recreated, timeout=90, what="the Service created again after the watch gap")
    relists_after = metric(op, "mlplatform_informer_relists_total", '{kind="Service",reason="expired"}')
    assert relists_after > relists_before  # the gap was closed by a full listing, not by a lucky event
    wait_for(lambda: all_ready(custom, namespace, expected=1), timeout=60, what="model Ready again")


def test_only_the_leader_writes_and_a_standby_takes_over_after_a_kill(start_operator, kubectl, custom, namespace,
                                                                      audit, wait_for):
    lease = ("--leader-elect", "--leader-elect-namespace", namespace, *LEASE)
    since = audit.offset()
    leader = start_operator("leader-a", *lease)
    wait_for(lambda: metric(leader, "mlplatform_leader") == 1, timeout=30, what="a leader")
    standby = start_operator("leader-b", *lease)
    assert standby.probe("/readyz") == 200 and metric(standby, "mlplatform_leader") == 0

    kubectl.apply(resource("ModelDeployment", "first", CPU_MODEL), namespace)
    wait_for(lambda: all_ready(custom, namespace, expected=1), timeout=60, what="first model Ready")
    time.sleep(2)
    assert audit.writes(since, namespace, agent="mlplatform-operator/leader-b") == []
    assert audit.writes(since, namespace, agent="mlplatform-operator/leader-a")

    leader.kill()
    killed_at = time.monotonic()
    kubectl.apply(resource("ModelDeployment", "second", CPU_MODEL), namespace)
    wait_for(lambda: get_cr(custom, "ModelDeployment", namespace, "second").get("status", {}).get("phase") == "Ready",
             timeout=8 + 10, interval=0.2, what="second model Ready within lease duration + 10 s")
    takeover = time.monotonic() - killed_at
    print(f"\nleader SIGKILLed: the standby had the new ModelDeployment Ready {takeover:.1f}s later (lease 8 s)")
    assert metric(standby, "mlplatform_leader") == 1


def test_a_deposed_leader_makes_no_write_after_the_new_leaders_first(start_operator, kubectl, custom, namespace,
                                                                     audit, wait_for):
    """The leader is frozen (SIGSTOP: a long pause or a partition) past its lease; a standby takes over and
    reconciles an edit made meanwhile. Woken up, the old leader's informers deliver that edit to its workers
    at once, before its election thread notices the lost lease: its writes must be refused, and it exits."""
    lease = ("--leader-elect", "--leader-elect-namespace", namespace, *LEASE)
    since = audit.offset()
    old = start_operator("deposed-a", *lease)
    wait_for(lambda: metric(old, "mlplatform_leader") == 1, timeout=30, what="a leader")
    new = start_operator("deposed-b", *lease)
    kubectl.apply(resource("ModelDeployment", "first", CPU_MODEL), namespace)
    wait_for(lambda: all_ready(custom, namespace, expected=1), timeout=60, what="first model Ready")

    old.process.send_signal(signal.SIGSTOP)
    try:
        kubectl.apply(resource("ModelDeployment", "first", {**CPU_MODEL, "replicas": 2}), namespace)
        kubectl.apply(resource("ModelDeployment", "second", CPU_MODEL), namespace)
        wait_for(lambda: metric(new, "mlplatform_leader") == 1, timeout=8 + 10, interval=0.2, what="a new leader")
        wait_for(lambda: all_ready(custom, namespace, expected=2), timeout=60, what="both models Ready by the new leader")
    finally:
        old.process.send_signal(signal.SIGCONT)
    assert old.process.wait(timeout=30) == 1, "the deposed leader exits"

    new_writes = audit.writes(since, namespace, agent="mlplatform-operator/deposed-b")
    assert new_writes, "the new leader reconciled"
    first_by_new = min(w["requestReceivedTimestamp"] for w in new_writes)
    late = [w for w in audit.writes(since, namespace, agent="mlplatform-operator/deposed-a")
            if w["requestReceivedTimestamp"] >= first_by_new]
    assert late == [], f"the deposed leader wrote after the new leader's first write: {summary(late)}"
    assert "lost the lease" in old.log_path.read_text() or "renew deadline" in old.log_path.read_text()


def test_a_leader_stopped_cleanly_hands_over_without_waiting_out_the_lease(start_operator, kubectl, custom,
                                                                           namespace, wait_for):
    lease = ("--leader-elect", "--leader-elect-namespace", namespace, *LEASE)
    leader = start_operator("clean-a", *lease)
    wait_for(lambda: metric(leader, "mlplatform_leader") == 1, timeout=30, what="a leader")
    standby = start_operator("clean-b", *lease)
    leader.stop()  # SIGTERM, as a rolling update does: the workers stop, then the lease is released
    stopped_at = time.monotonic()
    wait_for(lambda: metric(standby, "mlplatform_leader") == 1, timeout=8, interval=0.1,
             what="the standby leading before the 8 s lease ran out")
    takeover = time.monotonic() - stopped_at
    print(f"\nleader stopped cleanly: the standby led {takeover:.1f}s later (lease 8 s, retry 1 s)")
    kubectl.apply(resource("ModelDeployment", "after", CPU_MODEL), namespace)
    wait_for(lambda: all_ready(custom, namespace, expected=1), timeout=30, what="a model Ready under the new leader")


CHAOS_MODELS = 60
CHAOS_JOBS = 10
CHAOS_KILLS = 10
CHAOS_SECONDS = 75
CHAOS_MIN_EDITS, CHAOS_MIN_DELETES = 50, 10
CHAOS_MAX_EXTRA_SECONDS = 240


def _churn(kubectl, namespace: str, stop: threading.Event, log: dict, seed: int) -> None:
    """Create, edit and delete ModelDeployments and TrainingJobs until told to stop; an API call that
    fails while kube-apiserver restarts is counted and not retried."""
    try:
        _churn_until(kubectl, namespace, stop, log, seed)
    except BaseException as err:  # the test reports it
        log["crashed"] = repr(err)
        raise


def _churn_until(kubectl, namespace: str, stop: threading.Event, log: dict, seed: int) -> None:
    rnd = random.Random(seed)
    models = {f"m{i}": 0 for i in range(CHAOS_MODELS)}
    jobs = {f"t{i}": 0 for i in range(CHAOS_JOBS)}
    apply_all(kubectl, [resource("ModelDeployment", n, CPU_MODEL) for n in models] +
              [resource("TrainingJob", n, {"image": "python:3.12"}) for n in jobs], namespace)
    live = {("ModelDeployment", n) for n in models} | {("TrainingJob", n) for n in jobs}
    while not stop.is_set():
        kind, name = rnd.choice(sorted({("ModelDeployment", n) for n in models} | {("TrainingJob", n) for n in jobs}))
        action = rnd.choice(["edit", "edit", "delete"]) if (kind, name) in live else "create"
        edits = models if kind == "ModelDeployment" else jobs
        if action == "delete":
            done = kubectl.run("delete", PLURALS[kind], name, "-n", namespace, "--wait=false", check=False)
            live.discard((kind, name))
        else:
            edits[name] += action == "edit"
            env = [{"name": "EDIT", "value": str(edits[name])}]
            spec = {**CPU_MODEL, "runtime": {**CPU_MODEL["runtime"], "env": env}} if kind == "ModelDeployment" \
                else {"image": "python:3.12", "env": env}
            done = kubectl.apply(resource(kind, name, spec), namespace, check=False)
            live.add((kind, name))
        if done.returncode != 0 and "invalid" in done.stderr.lower():  # our manifest is wrong: not chaos
            raise AssertionError(f"churn: {kind} {name} {action}: {done.stderr}")
        outcome = action if done.returncode == 0 else f"{action} failed (API server restarting)"
        log[outcome] = log.get(outcome, 0) + 1
        stop.wait(rnd.uniform(0.05, 0.3))


def test_chaos_converges_without_losses_duplicates_or_orphans(start_operator, kubectl, custom, namespace, apps_v1,
                                                              core_v1, batch_v1, local_cluster, wait_for):
    op = start_operator("chaos-0")
    stop, churned = threading.Event(), {}
    churn = threading.Thread(target=_churn, args=(kubectl, namespace, stop, churned, 7), daemon=True)
    started = time.monotonic()
    churn.start()
    rnd = random.Random(11)
    kill_times = sorted(rnd.uniform(2, CHAOS_SECONDS - 5) for _ in range(CHAOS_KILLS))
    apiserver_restart_at = CHAOS_SECONDS / 2
    restarted_apiserver = False
    for i, at in enumerate(kill_times, start=1):
        if not restarted_apiserver and at > apiserver_restart_at:
            time.sleep(max(0.0, apiserver_restart_at - (time.monotonic() - started)))
            local_cluster.restart_apiserver()
            restarted_apiserver = True
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        op.kill()
        op = start_operator(f"chaos-{i}", wait_ready=False)
    if not restarted_apiserver:
        local_cluster.restart_apiserver()
    time.sleep(max(0.0, CHAOS_SECONDS - (time.monotonic() - started)))
    # At least CHAOS_SECONDS and at least the churn asserted below: kubectl is slower on a loaded machine.
    deadline = time.monotonic() + CHAOS_MAX_EXTRA_SECONDS
    while (churned.get("edit", 0) < CHAOS_MIN_EDITS or churned.get("delete", 0) < CHAOS_MIN_DELETES) \
            and time.monotonic() < deadline and churn.is_alive():
        time.sleep(0.5)
    stop.set()
    churn.join(timeout=60)
    churn_end, churn_end_wall = time.monotonic(), datetime.now(timezone.utc) + timedelta(seconds=5)
    assert "crashed" not in churned, churned
    assert churned.get("edit", 0) >= CHAOS_MIN_EDITS and churned.get("delete", 0) >= CHAOS_MIN_DELETES, churned
    op.wait_ready()

    def converged():
        models = list_crs(custom, "ModelDeployment", namespace)
        jobs = list_crs(custom, "TrainingJob", namespace)
        return all_ready(custom, namespace) and all(
            (j.get("status") or {}).get("phase") == "Succeeded"
            and j["status"].get("observedGeneration") == j["metadata"]["generation"] for j in jobs) and (models, jobs)
    models, jobs = wait_for(converged, timeout=180, interval=1, what="every resource Ready/Succeeded")
    reconverged = time.monotonic() - churn_end
    print(f"\nchaos: {CHAOS_KILLS} SIGKILLs, 1 kube-apiserver restart, churn {churned}; "
          f"{len(models)} models and {len(jobs)} training jobs left; reconverged {reconverged:.1f}s after the churn")

    for body in models + jobs:
        meta = body["metadata"]
        assert not meta.get("finalizers") and not meta.get("deletionTimestamp"), meta["name"]
        assert not [a for a in meta.get("annotations") or {} if "kopf" in a], meta["name"]
    # A child belongs to the object that controls it (its UID), not to a name: a resource deleted and created again
    # under the same name is a new owner, and the old one's children wait for the garbage collector.
    live_uids = {b["metadata"]["uid"] for b in models + jobs}
    owner = "mlplatform.dev/owner"

    def ours(items) -> list:
        return [c for c in items if (c.metadata.labels or {}).get(owner) and not c.metadata.deletion_timestamp]

    def children() -> list:
        return (ours(apps_v1.list_namespaced_deployment(namespace).items)
                + ours(core_v1.list_namespaced_service(namespace).items)
                + ours(batch_v1.list_namespaced_job(namespace).items))

    def left_to_collect() -> list:
        return [c for c in children() if controller_uid(c) not in live_uids]
    gc_started = time.monotonic()
    try:
        wait_for(lambda: not left_to_collect(), timeout=120, what="the children of deleted owners garbage-collected")
        print(f"children of deleted owners collected {time.monotonic() - gc_started:.1f} s after convergence")
    except pytest.fail.Exception:
        # What is left must be the garbage collector's to remove (kube-controller-manager is slow at times on a loaded
        # machine): a controller reference to one of our owners that no longer exists, on a child made before the
        # churn ended. No controller, or a child made later (for an owner already deleted), is an orphan of ours.
        left = left_to_collect()
        print(f"\nleft to the garbage collector after {time.monotonic() - gc_started:.0f} s:\n"
              + "\n".join(map(describe_child, left))
              + f"\nlive owners: {sorted((b['metadata']['name'], b['metadata']['uid']) for b in models + jobs)}")
        for child in left:
            ref = next((r for r in child.metadata.owner_references or [] if r.controller), None)
            assert ref is not None and ref.kind in ("ModelDeployment", "TrainingJob"), f"orphan: {describe_child(child)}"
            assert child.metadata.creation_timestamp <= churn_end_wall, f"made after the churn: {describe_child(child)}"
    for items, what in ((apps_v1.list_namespaced_deployment(namespace).items, "Deployment"),
                        (core_v1.list_namespaced_service(namespace).items, "Service")):
        controllers = sorted(controller_uid(c) for c in ours(items)
                             if c.metadata.labels[owner].startswith("modeldeployment.") and controller_uid(c) in live_uids)
        assert controllers == sorted(b["metadata"]["uid"] for b in models), f"one {what} per ModelDeployment"

    jobs_now = ours(batch_v1.list_namespaced_job(namespace).items)
    for body in jobs:
        name, status = body["metadata"]["name"], body["status"]
        runs = [r["run"] for r in status["runs"]]
        assert runs == sorted(set(runs)) and runs[-1] == status["run"], f"{name}: duplicate or lost runs {runs}"
        its_jobs = [j for j in jobs_now if controller_uid(j) == body["metadata"]["uid"]]
        assert len([j for j in its_jobs if j.metadata.name == f"{name}-{status['run']}"]) == 1, f"{name}: the current run's Job"
        for job in its_jobs:
            assert int(job.metadata.labels["mlplatform.dev/run"]) in runs, f"{job.metadata.name}: no such run in {runs}"
