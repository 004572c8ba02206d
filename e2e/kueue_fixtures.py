"""Fixtures for the tests that need a real Kueue (e2e/controlplane/kueue.py) on the local control plane.

kueue           (module)  Kueue's CRDs, webhooks and manager, started for the module and removed after it
                          (the other modules expect a cluster without Kueue: KueueNotInstalled)
kueue_operator  (module)  an operator process started once Kueue serves (the session operator is paused
                          meanwhile, so that no operator carries a stale "Kueue not installed")
"""

from __future__ import annotations

import json
import os

import pytest

from operator_fixtures import ROOT, Operator, no_session_operator  # noqa: F401


@pytest.fixture(scope="module")
def kueue(kubeconfig):
    if os.environ.get("E2E_KUBECONFIG"):
        pytest.fail("the Kueue tests start Kueue on the local control plane (e2e/controlplane/kueue.py); "
                    "unset E2E_KUBECONFIG to run them")
    import cluster  # e2e/controlplane/cluster.py
    import kueue as kueue_runner  # e2e/controlplane/kueue.py

    handle = cluster.Cluster()
    runner = kueue_runner.Kueue(handle.run, handle.bin("kubectl"))
    figures = runner.up()
    print(f"\nKueue {kueue_runner.versions.KUEUE} up: {json.dumps(figures)}")
    yield runner
    runner.down()


@pytest.fixture(scope="module")
def kueue_operator(no_session_operator, kueue, kubeconfig, crds, operator_config):  # noqa: F811
    process = Operator(kubeconfig, ROOT / ".run" / "e2e-kueue-operator.log")
    process.start(operator_config)
    yield process
    process.stop()
