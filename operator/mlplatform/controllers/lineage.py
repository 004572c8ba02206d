"""ModelDeployment step `lineage`: status.lineage, the FeatureContract condition, and the Events that tell the
story (FeatureContractChanged, RunSkippedByPromotion). Decisions in status/lineage.py and status/promotion.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..runtime.kube import KubeError
from ..status.conditions import Cond
from ..status.lineage import CONTRACT, feature_contract, lineage_status
from .base import Context, log

SKIPPED = re.compile(r"run (\d+) skipped: ([^;]*)")


@dataclass(frozen=True)
class LineageReport:
    status: dict | None
    conditions: list[Cond] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message), once status is written

    def announce(self, ctx: Context, body: dict, written: bool) -> None:
        """The Events of this report, when the status that records the change was written (not before: a
        reconcile that reads an older status would tell it again)."""
        for kind, reason, message in self.events if written else ():
            _post(ctx, body, kind, reason, message)


def report_lineage(ctx: Context, resolved, rollout_status: dict | None) -> LineageReport:
    spec, owner, body = resolved.spec, resolved.owner, resolved.body
    name = spec.model.from_training_job
    training_job = ctx.cache.resource(("TrainingJob", owner.namespace, name)) if name else None
    lineage = lineage_status(name, training_job, resolved.resolution.uri, rollout_status)
    contract = feature_contract(list(spec.features or []), resolved.views, training_job,
                                (lineage or {}).get("artifactUri"))
    previous = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
    events = []
    if contract is not None and contract_changed(previous.get(CONTRACT), contract):
        events.append(("Normal" if contract.status else "Warning", "FeatureContractChanged",
                       f"FeatureContract {contract.status_text} ({contract.reason}): {contract.message}"))
    before = dict(SKIPPED.findall((previous.get("ModelResolved") or {}).get("message") or ""))
    for run, why in SKIPPED.findall(resolved.resolution.condition.message or ""):
        if run not in before:
            events.append(("Normal", "RunSkippedByPromotion", f"run {run} of TrainingJob {name} skipped: {why}"))
    return LineageReport(lineage, [contract] if contract is not None else [], events)


def contract_changed(old: dict | None, new: Cond) -> bool:
    """News: the contract broke, was restored, or broke differently; not its first verdict nor Unknown."""
    if old is None or new.status is None:
        return False
    if old.get("status") != new.status_text:
        return new.status is False or old.get("status") == "False"
    return new.status is False and old.get("message") != new.message


def _post(ctx: Context, body: dict, kind: str, reason: str, message: str) -> None:
    try:
        ctx.kube.post_event(body, kind, reason, message)
    except KubeError as err:
        log.warning("could not post event on %s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], err)
