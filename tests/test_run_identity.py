"""Which TrainingJob spec edits start a new run: decided per field (the run's identity, status.runSpecHash),
and said in each field's description (docs/api.md, kubectl explain)."""

from __future__ import annotations

import pytest

from mlplatform.api.trainingjob import FIELDS_THAT_DO_NOT_START_A_RUN, TrainingJobSpec
from mlplatform.render.trainingjob import run_spec_hash

BASE = {"image": "ghcr.io/acme/train:1", "workers": 2, "output": {"uri": "s3://models/fraud/"},
        "failurePolicy": {"maxRestarts": 1}}
# One edit of every spec field: a field added to the model without one here fails the test below.
EDITS = {
    "command": ["python", "other.py"],
    "args": ["--epochs", "3"],
    "env": [{"name": "SEED", "value": "7"}],
    "envFrom": [{"configMapRef": {"name": "settings"}}],
    "image": "ghcr.io/acme/train:2",
    "serviceAccountName": "trainer",
    "resources": {"cpu": "4"},
    "scheduling": {"nodeSelector": {"pool": "batch"}},
    "workers": 4,
    "distribution": {"framework": "jax"},
    "backoffLimit": 3,
    "checkpoint": {"volumeClaimName": "ckpt"},
    "output": {"uri": "s3://models/other/"},
    "features": ["driver-stats"],
    "activeDeadlineSeconds": 3600,
    "ttlSecondsAfterFinished": 60,
    "queueName": "team-a",
    "failurePolicy": {"maxRestarts": 5, "restartOnPreemption": False, "nonRetryableExitCodes": [2]},
    "suspend": True,
    "trigger": {"schedule": "0 3 * * *", "timeZone": "Europe/Dublin"},
}
SPEC_FIELDS = [info.alias or name for name, info in TrainingJobSpec.model_fields.items()]


def test_every_spec_field_has_an_edit_here():
    assert sorted(EDITS) == sorted(SPEC_FIELDS)


@pytest.mark.parametrize("field", SPEC_FIELDS)
def test_an_edit_starts_a_new_run_unless_the_field_is_a_policy(field):
    before = run_spec_hash(TrainingJobSpec.model_validate(BASE))
    after = run_spec_hash(TrainingJobSpec.model_validate({**BASE, field: EDITS[field]}))
    assert (after != before) == (field not in FIELDS_THAT_DO_NOT_START_A_RUN)


def test_failure_policy_queue_ttl_deadline_and_suspend_start_no_run():
    assert set(FIELDS_THAT_DO_NOT_START_A_RUN) == {"failurePolicy", "queueName", "ttlSecondsAfterFinished",
                                                   "activeDeadlineSeconds", "suspend", "trigger"}


@pytest.mark.parametrize("field", SPEC_FIELDS)
def test_each_field_s_description_says_whether_an_edit_starts_a_new_run(field):
    info = next(i for n, i in TrainingJobSpec.model_fields.items() if (i.alias or n) == field)
    starts, starts_none = "Editing it starts a new run" in info.description, "Editing it starts no run" in info.description
    assert (starts, starts_none) == ((False, True) if field in FIELDS_THAT_DO_NOT_START_A_RUN else (True, False))
