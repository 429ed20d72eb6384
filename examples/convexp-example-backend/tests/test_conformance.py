"""The plugin's own tests: every convexp conformance check, and its trainer against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
from convexp_example_backend.backend import ExampleBackend

from convexp.plugin_api import CHECKS, CollectingObserver, run_check, tiny_job, with_shared_init


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_conformance(check):
    run_check(check, "example")  # a check of a feature the backend does not declare is a skip, saying why


def test_step_zero_reports_the_shared_initial_weights():
    job = with_shared_init(tiny_job(max_steps=2))
    observer = CollectingObserver()
    ExampleBackend().train(job, observer)
    for name in job.snapshot_layers:
        np.testing.assert_array_equal(observer.snapshots[0][name].kernel, job.initial_weights[name].kernel)
    assert sorted(observer.snapshots) == [0, 1, 2] and len(observer.checkpoints) == 1
