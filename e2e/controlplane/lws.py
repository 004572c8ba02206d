"""The LeaderWorkerSet CRD of the pinned sigs.k8s.io/lws module, for tests/test_llm_serving.py (which validates
rendered LeaderWorkerSets against its schema). The controller itself is run by components.py
(`python e2e/controlplane/components.py lws up|down|status`)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import components


def crd_manifest() -> dict:
    spec = components.LWS
    [crd] = [c for c in components.crd_manifests(spec, components.module_dir(spec.module, spec.version), 0, "")
             if c["spec"]["names"]["kind"] == "LeaderWorkerSet"]
    return crd
