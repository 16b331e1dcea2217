"""Optuna tuning: deterministic for a seed, returns classifier parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.model import CalibratedBoostedClassifier
from training.tuning import SearchSpace, TuningSettings, default_trial, tune_cv, tune_holdout


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


def test_search_space_bounds_every_trial_and_the_default_point():
    X, y = _data()
    space = SearchSpace(min_child_samples=(5, 12), num_leaves=(2, 8))
    settings = TuningSettings(
        n_trials=6, timeout_seconds=None, seed=3, max_rounds=60, search_space=space
    )
    result = tune_holdout(X.iloc[:800], y[:800], X.iloc[800:], y[800:], settings)
    # the conventional first point (20 rows, 31 leaves) is moved into the space
    assert result.trials[0]["param_min_child_samples"] == 12
    assert result.trials[0]["param_num_leaves"] == 8
    assert all(5 <= t["param_min_child_samples"] <= 12 for t in result.trials)
    assert all(2 <= t["param_num_leaves"] <= 8 for t in result.trials)
    assert 5 <= result.best_params["min_child_samples"] <= 12


def test_default_trial_lies_inside_the_default_search_space():
    space = SearchSpace()
    for name, value in default_trial().items():
        low, high = getattr(space, name)
        assert low <= value <= high, name


def test_search_space_rejects_empty_or_non_positive_ranges():
    with pytest.raises(ValueError, match="min_child_samples"):
        SearchSpace(min_child_samples=(50, 10))
    with pytest.raises(ValueError, match="learning_rate"):
        SearchSpace(learning_rate=(0.0, 0.1))
