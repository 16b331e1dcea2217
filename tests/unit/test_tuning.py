"""Optuna tuning: deterministic for a seed, returns classifier parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.model import CalibratedBoostedClassifier
from training.tuning import TuningSettings, tune_cv, tune_holdout


def _data(n: int = 1200, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    X["c"] = pd.Series(rng.choice(["x", "y"], size=n), dtype="str")
    logit = 1.5 * X["a"] - X["b"] + (X["c"] == "x")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy(dtype=float)
    return X, y


def test_holdout_search_is_deterministic_and_usable():
    X, y = _data()
    settings = TuningSettings(n_trials=4, timeout_seconds=None, seed=7, max_rounds=200)
    first = tune_holdout(X.iloc[:800], y[:800], X.iloc[800:], y[800:], settings)
    second = tune_holdout(X.iloc[:800], y[:800], X.iloc[800:], y[800:], settings)
    assert first.best_params == second.best_params
    assert first.best_value == second.best_value
    assert first.n_trials == 4 and len(first.trials) == 4
    assert first.trials[0]["param_learning_rate"] == 0.05  # the default point is tried first
    model = CalibratedBoostedClassifier(**first.best_params).fit(
        X.iloc[:800], y[:800], X.iloc[800:], y[800:]
    )
    assert model.booster_.num_trees() == first.best_params["n_estimators"]


def test_cv_search_summary():
    X, y = _data(600, seed=1)
    result = tune_cv(X, y, TuningSettings(n_trials=3, timeout_seconds=None, cv_folds=3))
    summary = result.summary()
    assert summary["design"] == "3-fold cv"
    assert summary["n_complete"] + summary["n_pruned"] == 3
    assert 0 < summary["best_value"] < 0.7  # better than the log loss of a constant guess
    assert result.best_params["n_estimators"] >= 1
