"""Whether a sweep's trial stops early: the median rule over epochs, decided by Optuna's ``MedianPruner``.

After each epoch but the last, a trial whose best objective so far is worse than the median of the finished
trials' objectives at that epoch is pruned (once ``startup_trials`` trials have finished, and after its first
``warmup_epochs`` epochs). The finished trials are read from the database, so the rule decides alike for a
trial trained here and one on a Dask worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from convexp.experiments.samplers import Trial, optuna_module, optuna_study
from convexp.experiments.sweep_spec import SweepSpec


def prune_reason(sweep: SweepSpec, history: Sequence[Trial], objective: Mapping[int, float]) -> str | None:
    """Why the trial whose objective so far is ``objective`` (epoch -> value) stops now, or None to go on."""
    rule = sweep.prune
    if rule is None or not objective:
        return None
    finished = [t for t in history if t.state == "complete" and t.value is not None]
    if len(finished) < rule.startup_trials:  # the rule's own first check, without building a study
        return None
    optuna = optuna_module()
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=rule.startup_trials,
        n_warmup_steps=rule.warmup_epochs + 1,  # Optuna counts steps from 0, epochs from 1
    )
    current = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values=dict(objective))
    if not pruner.prune(optuna_study(sweep, finished, with_params=False), current):
        return None
    epoch = max(objective)
    at_epoch = [t.objective[epoch] for t in finished if epoch in t.objective]
    best = max(objective.values()) if sweep.objective.maximize else min(objective.values())
    return (
        f"stopped after epoch {epoch} by the median rule: its best {sweep.objective.name} so far, {best:.4g}, is "
        f"{'below' if sweep.objective.maximize else 'above'} the median {float(np.median(at_epoch)):.4g} of "
        f"{len(at_epoch)} finished trial(s) at that epoch"
    )
