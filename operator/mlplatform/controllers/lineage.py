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


def report_lineage(ctx: Context, resolved, rollout_status: dict | None) -> LineageReport:
    spec, owner, body = resolved.spec, resolved.owner, resolved.body
    name = spec.model.from_training_job
    training_job = ctx.cache.resource(("TrainingJob", owner.namespace, name)) if name else None
    lineage = lineage_status(name, training_job, resolved.resolution.uri, rollout_status)
    contract = feature_contract(list(spec.features or []), resolved.views, training_job,
                                (lineage or {}).get("artifactUri"))
    previous = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
    if contract is not None:
        old = previous.get(CONTRACT)
        if old is not None and (old.get("status") != contract.status_text or old.get("message") != contract.message):
            _post(ctx, body, "Normal" if contract.status else "Warning", "FeatureContractChanged",
                  f"FeatureContract {contract.status_text} ({contract.reason}): {contract.message}")
    before = dict(SKIPPED.findall((previous.get("ModelResolved") or {}).get("message") or ""))
    for run, why in SKIPPED.findall(resolved.resolution.condition.message or ""):
        if run not in before:
            _post(ctx, body, "Normal", "RunSkippedByPromotion", f"run {run} of TrainingJob {name} skipped: {why}")
    return LineageReport(lineage, [contract] if contract is not None else [])


def _post(ctx: Context, body: dict, kind: str, reason: str, message: str) -> None:
    try:
        ctx.kube.post_event(body, kind, reason, message)
    except KubeError as err:
        log.warning("could not post event on %s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], err)
