"""Writes as the API server recorded them: the local control plane's audit log (Metadata level, writes
by clients other than the control plane's own components), read from a byte offset."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
OPERATOR_AGENT = "mlplatform-operator/"


@dataclass
class AuditLog:
    path: Path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def writes(self, since: int, namespace: str, agent: str = OPERATOR_AGENT) -> list[dict]:
        """Completed write requests into namespace by clients whose user agent starts with agent
        (Lease renewals excluded: they are how leader election works, not reconciling)."""
        with open(self.path, "rb") as f:
            f.seek(since)
            lines = f.read().splitlines()
        found = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            ref = event.get("objectRef") or {}
            if (event.get("verb") in WRITE_VERBS and (event.get("userAgent") or "").startswith(agent)
                    and ref.get("namespace") == namespace and ref.get("resource") != "leases"):
                found.append(event)
        return found


def summary(writes: list[dict]) -> dict[str, int]:
    """verb resource[/subresource] -> count, for messages."""
    return dict(Counter(f"{w['verb']} {w['objectRef'].get('resource')}"
                        + (f"/{w['objectRef']['subresource']}" if w['objectRef'].get('subresource') else "")
                        for w in writes))
