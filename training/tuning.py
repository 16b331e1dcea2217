"""Hyper-parameter search for the boosted classifier with Optuna.

TPE sampling (seeded), LightGBM early stopping inside each trial, and a
median pruner fed with the validation log loss every few boosting rounds, so
hopeless trials stop early. Two designs:

- `tune_holdout`: train on earlier rows, validate on later ones (time split);
- `tune_cv`: stratified k-fold cross-validation (flat tables).

Both return a `TuningResult` whose `best_params` are keyword arguments for
`CalibratedBoostedClassifier`, including the number of boosting rounds found
by early stopping. With a fixed `n_trials` that the time budget does not cut
short, the search is deterministic for a given seed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from training.model import (
    CalibratedBoostedClassifier,
    FeatureEncoder,
    booster_feature_names,
)

TUNING_METRIC = "binary_logloss"
TrialProgress = Callable[[int, int, float | None], None]


@dataclass(frozen=True)
class SearchSpace:
    """Ranges the search draws LightGBM parameters from (inclusive; sampled on a
    log scale except the two fractions).

    Shared by the time-split and the cross-validated search. Narrower
    `min_child_samples` ranges (5-100, 5-50) were compared with this one on
    12 generated portfolios and did not change how the largest accounts are
    priced (docs/benchmarks.md, "Model quality", 2026-11-28).
    """

    learning_rate: tuple[float, float] = (0.01, 0.2)
    num_leaves: tuple[int, int] = (2, 128)
    min_child_samples: tuple[int, int] = (5, 400)
    colsample_bytree: tuple[float, float] = (0.3, 1.0)
    subsample: tuple[float, float] = (0.5, 1.0)
    reg_lambda: tuple[float, float] = (1e-3, 30.0)
    reg_alpha: tuple[float, float] = (1e-3, 10.0)

    def __post_init__(self) -> None:
        for name, (low, high) in asdict(self).items():
            if not 0 < low <= high:
                raise ValueError(f"search space {name}: need 0 < low <= high, got ({low}, {high})")


@dataclass(frozen=True)
class TuningSettings:
    """How hard to search. Defaults keep default training of both targets on a
    10,000-account, 36-month portfolio within a few minutes on 2 cores."""

    n_trials: int = 40
    timeout_seconds: float | None = 60.0
    seed: int = 0
    early_stopping_rounds: int = 40
    max_rounds: int = 2000
    cv_folds: int = 5
    # Pruning compares trials at equal cumulative shrinkage (learning_rate x
    # rounds), in steps of `pruning_unit`, after `pruner_warmup_units` of them.
    # A trial is pruned when its best value so far is worse than
    # `pruner_percentile` % of the other trials at the same step (75: only the
    # worst quarter is stopped; learning curves cross, so pruning stays mild).
    pruning_unit: float = 0.5
    pruner_percentile: float = 75.0
    pruner_startup_trials: int = 8
    pruner_warmup_units: int = 4
    # Rows used for the search (a seeded random sample when the training set is
    # larger); the final model always trains on every training row.
    max_tuning_rows: int | None = 60_000
    # LightGBM threads. None: one thread on machines with 2 cores or fewer, or
    # below `threads_row_threshold` rows; all cores otherwise. OpenMP threads
    # spin while they wait: on a small or busy machine two threads were
    # measured up to 10x slower than one (docs/benchmarks.md, "Model quality").
    n_jobs: int | None = None
    threads_row_threshold: int = 100_000
    # the ranges each trial draws its parameters from
    search_space: SearchSpace = field(default_factory=SearchSpace)

    def threads_for(self, n_rows: int) -> int:
        if self.n_jobs is not None:
            return self.n_jobs
        if (os.cpu_count() or 1) <= 2 or n_rows < self.threads_row_threshold:
            return 1
        return 0

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ValueError("n_trials must be at least 1")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive (or None for no limit)")
        if self.cv_folds < 2:
            raise ValueError("cv_folds must be at least 2")


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_value: float
    metric: str
    design: str
    n_trials: int
    n_complete: int
    n_pruned: int
    duration_seconds: float
    n_tuning_rows: int
    trials: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary of the study (for tracking)."""
        return asdict(self)


def default_trial(space: SearchSpace | None = None) -> dict[str, Any]:
    """A conventional starting point, tried first so the search never does worse than it.

    Each value is moved into `space`'s range when it lies outside it.
    """
    space = space or SearchSpace()
    conventional = {
        "subsample": 1.0,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "colsample_bytree": 1.0,
        "reg_lambda": 1e-3,
        "reg_alpha": 1e-3,
    }
    ranges = asdict(space)
    return {
        name: min(max(value, ranges[name][0]), ranges[name][1])
        for name, value in conventional.items()
    }


def suggest_params(
    trial: optuna.Trial, seed: int, n_jobs: int, space: SearchSpace | None = None
) -> dict[str, Any]:
    """One point of the search space (classifier keyword arguments, without n_estimators)."""
    space = space or SearchSpace()
    subsample = trial.suggest_float("subsample", *space.subsample)
    return {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "num_leaves": trial.suggest_int("num_leaves", *space.num_leaves, log=True),
        "min_child_samples": trial.suggest_int(
            "min_child_samples", *space.min_child_samples, log=True
        ),
        "colsample_bytree": trial.suggest_float("colsample_bytree", *space.colsample_bytree),
        "subsample": subsample,
        "subsample_freq": 1 if subsample < 1.0 else 0,
        "reg_lambda": trial.suggest_float("reg_lambda", *space.reg_lambda, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", *space.reg_alpha, log=True),
        "random_state": seed,
        "n_jobs": n_jobs,
    }


def _pruning_callback(
    trial: optuna.Trial, learning_rate: float, unit: float
) -> Callable[[Any], None]:
    """Report the validation metric to Optuna at equal amounts of learning; stop if pruned.

    Trials with different learning rates progress at different speeds per
    round, so comparing them at the same round favours fast learners. The
    step reported is instead the number of `unit`s of cumulative shrinkage
    (learning_rate x rounds) reached: a trial at 0.01 reports step 1 at round
    `unit / 0.01`, a trial at 0.1 at round `unit / 0.1`.
    """
    reported = 0

    def callback(env: Any) -> None:
        nonlocal reported
        step = int(learning_rate * (env.iteration + 1) / unit + 1e-9)
        if step <= reported:
            return
        reported = step
        for entry in env.evaluation_result_list:
            data_name, metric_name, value = entry[0], entry[1], entry[2]
            if data_name == "valid" and metric_name == TUNING_METRIC:
                trial.report(float(value), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {env.iteration + 1}")

    return callback


def _dataset(
    matrix: np.ndarray, y: np.ndarray, encoder: FeatureEncoder, reference: lgb.Dataset | None = None
):
    return lgb.Dataset(
        matrix,
        label=y,
        feature_name=booster_feature_names(encoder.feature_names_),
        categorical_feature=encoder.categorical_indices,
        reference=reference,
        params={"max_bin": 255, "feature_pre_filter": False, "verbosity": -1},
        free_raw_data=False,
    )


def _sample(
    X: pd.DataFrame, y: np.ndarray, max_rows: int | None, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    if max_rows is None or len(X) <= max_rows:
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(len(X), size=max_rows, replace=False))
    return X.iloc[rows], y[rows]


def _study(settings: TuningSettings) -> optuna.Study:
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.PercentilePruner(
            settings.pruner_percentile,
            n_startup_trials=settings.pruner_startup_trials,
            n_warmup_steps=settings.pruner_warmup_units,
            interval_steps=1,
        ),
    )
    study.enqueue_trial(default_trial(settings.search_space))
    return study


def _run(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    settings: TuningSettings,
    design: str,
    n_rows: int,
    progress: TrialProgress | None,
) -> TuningResult:
    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress is not None:
            best = study.best_value if _has_complete(study) else None
            progress(trial.number + 1, settings.n_trials, best)

    started = time.perf_counter()
    study.optimize(
        objective,
        n_trials=settings.n_trials,
        timeout=settings.timeout_seconds,
        callbacks=[report],
        catch=(),
    )
    duration = time.perf_counter() - started
    if not _has_complete(study):
        raise RuntimeError("no tuning trial completed; raise timeout_seconds or n_trials")
    best = study.best_trial
    params = dict(best.user_attrs["classifier_params"])
    params["n_estimators"] = int(best.user_attrs["n_estimators"])
    states = [t.state for t in study.trials]
    return TuningResult(
        best_params=params,
        best_value=float(best.value),
        metric=TUNING_METRIC,
        design=design,
        n_trials=len(study.trials),
        n_complete=states.count(optuna.trial.TrialState.COMPLETE),
        n_pruned=states.count(optuna.trial.TrialState.PRUNED),
        duration_seconds=duration,
        n_tuning_rows=n_rows,
        trials=[
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "n_estimators": t.user_attrs.get("n_estimators"),
                "seconds": t.duration.total_seconds() if t.duration else None,
                **{f"param_{k}": v for k, v in t.params.items()},
            }
            for t in study.trials
        ],
    )


def _has_complete(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _classifier_params(
    trial: optuna.Trial, settings: TuningSettings, n_rows: int
) -> dict[str, Any]:
    params = suggest_params(
        trial, settings.seed, settings.threads_for(n_rows), settings.search_space
    )
    trial.set_user_attr("classifier_params", params)
    return params


def _booster_params(params: dict[str, Any]) -> dict[str, Any]:
    return CalibratedBoostedClassifier(**params).booster_params()


def tune_holdout(
    X_train: pd.DataFrame,
    y_train: Any,
    X_valid: pd.DataFrame,
    y_valid: Any,
    settings: TuningSettings | None = None,
    progress: TrialProgress | None = None,
) -> TuningResult:
    """Search on a time split: boosters train on `X_train` and stop early on `X_valid`."""
    settings = settings or TuningSettings()
    y_train = np.asarray(y_train, dtype=np.float64)
    y_valid = np.asarray(y_valid, dtype=np.float64)
    X_fit, y_fit = _sample(X_train, y_train, settings.max_tuning_rows, settings.seed)
    encoder = FeatureEncoder().fit(X_fit)
    train_set = _dataset(encoder.transform(X_fit), y_fit, encoder)
    valid_set = _dataset(encoder.transform(X_valid), y_valid, encoder, reference=train_set)

    def objective(trial: optuna.Trial) -> float:
        params = _classifier_params(trial, settings, len(X_fit))
        booster = lgb.train(
            _booster_params(params),
            train_set,
            num_boost_round=settings.max_rounds,
            valid_sets=[valid_set],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(settings.early_stopping_rounds, verbose=False),
                _pruning_callback(trial, params["learning_rate"], settings.pruning_unit),
            ],
        )
        trial.set_user_attr("n_estimators", max(1, booster.best_iteration))
        return float(booster.best_score["valid"][TUNING_METRIC])

    return _run(_study(settings), objective, settings, "holdout", len(X_fit), progress)


def tune_cv(
    X: pd.DataFrame,
    y: Any,
    settings: TuningSettings | None = None,
    progress: TrialProgress | None = None,
) -> TuningResult:
    """Search with stratified k-fold cross-validation (mean validation log loss)."""
    settings = settings or TuningSettings()
    y = np.asarray(y, dtype=np.float64)
    X_fit, y_fit = _sample(X, y, settings.max_tuning_rows, settings.seed)
    encoder = FeatureEncoder().fit(X_fit)
    full_set = _dataset(encoder.transform(X_fit), y_fit, encoder)
    n_minority = int(min(y_fit.sum(), len(y_fit) - y_fit.sum()))
    folds = min(settings.cv_folds, n_minority)
    if folds < 2:
        raise ValueError("too few positives or negatives for cross-validation")

    def objective(trial: optuna.Trial) -> float:
        params = _classifier_params(trial, settings, len(X_fit))
        results = lgb.cv(
            _booster_params(params),
            full_set,
            num_boost_round=settings.max_rounds,
            nfold=folds,
            stratified=True,
            shuffle=True,
            seed=settings.seed,
            callbacks=[
                lgb.early_stopping(settings.early_stopping_rounds, verbose=False),
                _pruning_callback(trial, params["learning_rate"], settings.pruning_unit),
            ],
        )
        curve = results[f"valid {TUNING_METRIC}-mean"]
        trial.set_user_attr("n_estimators", len(curve))
        return float(curve[-1]) if curve else math.inf

    return _run(_study(settings), objective, settings, f"{folds}-fold cv", len(X_fit), progress)
