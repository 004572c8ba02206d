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

    def events(self, since: int) -> list[dict]:
        """Every request recorded after the byte offset since."""
        with open(self.path, "rb") as f:
            f.seek(since)
            lines = f.read().splitlines()
        found = []
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return found

    def writes(self, since: int, namespace: str, agent: str = OPERATOR_AGENT) -> list[dict]:
        """Completed write requests into namespace by clients whose user agent starts with agent
        (Lease renewals excluded: they are how leader election works, not reconciling)."""
        return [event for event in self.events(since)
                if event.get("verb") in WRITE_VERBS and (event.get("userAgent") or "").startswith(agent)
                and (event.get("objectRef") or {}).get("namespace") == namespace
                and (event.get("objectRef") or {}).get("resource") != "leases"]


def summary(writes: list[dict]) -> dict[str, int]:
    """verb resource[/subresource] -> count, for messages."""
    return dict(Counter(f"{w['verb']} {w['objectRef'].get('resource')}"
                        + (f"/{w['objectRef']['subresource']}" if w['objectRef'].get('subresource') else "")
                        for w in writes))
