"""Leader election on a coordination.k8s.io Lease, with the official client's `kubernetes.leaderelection`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import kubernetes
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger("mlplatform.runtime.leader")


@dataclass(frozen=True)
class LeaseSettings:
    name: str = "mlplatform-operator"
    namespace: str = "default"
    lease_duration: int = 15  # seconds a standby waits after the last renewal it saw before taking over
    renew_deadline: int = 10  # seconds the leader keeps retrying a renewal before it gives up leading
    retry_period: int = 2

    def problems(self) -> list[str]:
        """The constraints kubernetes.leaderelection enforces with sys.exit, as messages naming the flag."""
        problems = []
        if self.retry_period < 1:
            problems.append("--leader-elect-retry-period must be at least 1")
        if self.renew_deadline <= 1.2 * self.retry_period:
            problems.append("--leader-elect-renew-deadline must be greater than 1.2 x --leader-elect-retry-period")
        if self.lease_duration <= self.renew_deadline:
            problems.append("--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline")
        return problems


class _GuardedLeaseLock(LeaseLock):
    """LeaseLock catches only ApiException: a refused connection (API server restarting) would end the
    election thread, and a leader would go on without renewing. Every failure here is a failed attempt.
    Once released, it takes no lease again (the process is stopping)."""

    released = False
    renewed_at: float | None = None  # time.monotonic() of the last create or renewal that succeeded

    def get(self, name, namespace):
        try:
            return super().get(name, namespace)
        except Exception as err:  # noqa: BLE001 - retried on the next period
            log.warning("reading lease %s/%s failed: %s", namespace, name, err)
            return False, err

    def create(self, name, namespace, election_record):
        return self._write("creating", super().create, name, namespace, election_record)

    def update(self, name, namespace, updated_record):
        return self._write("renewing", super().update, name, namespace, updated_record)

    def _write(self, doing: str, write, name, namespace, record) -> bool:
        """A create or renewal: none once released; a success is when the lease was last made current."""
        if self.released:
            return False
        try:
            written = write(name, namespace, record)
        except Exception as err:  # noqa: BLE001 - retried on the next period
            log.warning("%s lease %s/%s failed: %s", doing, namespace, name, err)
            return False
        if written:
            self.renewed_at = time.monotonic()
        return written


class LeaderElector:
    """Campaigns in a thread; calls on_started once leading and on_stopped when the lease is lost."""

    def __init__(self, api_client: kubernetes.client.ApiClient, settings: LeaseSettings, identity: str,
                 on_started: Callable[[], None], on_stopped: Callable[[], None]):
        self._lock = lock = _GuardedLeaseLock(settings.name, settings.namespace, identity)
        lock.api_instance = kubernetes.client.CoordinationV1Api(api_client)  # ours, not the global default client
        config = electionconfig.Config(lock, settings.lease_duration, settings.renew_deadline,
                                       settings.retry_period, on_started, on_stopped)
        self._election = leaderelection.LeaderElection(config)
        self._renew_deadline = settings.renew_deadline
        self.thread = threading.Thread(target=self._election.run, name="leader-election", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def write_refusal(self) -> str | None:
        """Why this process may not write now, else None: its last renewal is older than the renew deadline.
        Checked before every write, without an API call: a leader frozen past its lease (a long pause, a
        partition) writes nothing when it wakes, even before the election thread notices it lost the lease.
        The lease lasts longer than the renew deadline, so no other instance can lead while this allows."""
        renewed_at = self._lock.renewed_at
        if renewed_at is None:
            return "this instance never held the lease"
        age = time.monotonic() - renewed_at
        if age > self._renew_deadline:
            return f"the lease was last renewed {age:.1f}s ago, past the renew deadline of {self._renew_deadline}s"
        return None

    def release(self) -> bool:
        """On a clean stop: clear the holder of a lease we hold, so that a standby takes it at its next
        attempt instead of waiting out the lease duration (the library has no release of its own; a lease
        without holder is one it takes at once). Returns whether it released."""
        lock = self._lock
        lock.released = True
        try:
            lease = lock.api_instance.read_namespaced_lease(lock.name, lock.namespace)
            if lease.spec is None or lease.spec.holder_identity != lock.identity:
                return False
            lease.spec.holder_identity = None
            lock.api_instance.replace_namespaced_lease(lock.name, lock.namespace, lease)  # resourceVersion-checked
        except Exception as err:  # noqa: BLE001 - the lease then simply expires
            log.warning("releasing lease %s/%s failed: %s", lock.namespace, lock.name, err)
            return False
        log.info("released lease %s/%s", lock.namespace, lock.name)
        return True
