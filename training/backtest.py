"""Backtests: score past as-of dates and compare the predictions with what then happened.

At each backtest date t, the accounts active at t are scored from their
features at t and compared with their labels over (t, t + h] (the training
panel's rows at t: the same feature and label code as training). Per date
and target: discrimination (ROC-AUC, PR-AUC), calibration (mean predicted vs
realised rate, Brier, ECE and the reliability bins, whose drift over the
dates shows whether calibration holds) and, for churn, the predicted ARR at
risk (sum of p_churn x ARR) against the ARR that actually churned.

Which models score date t is a `ModelsAt` function:

- `walk_forward_models`: at each t, models trained as `portfolio train
  --as-of t` would train them (only label windows that end by t), without
  tracking: an honest out-of-time backtest of the training recipe;
- `fixed_models` / `champion_models`: the same models at every date (e.g.
  the current champions). Dates before a model's evaluation snapshot overlap
  what it was fitted on; `Backtest.summary.out_of_time` says which dates are
  genuinely after its training data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.contract import Tables
from training.compare import UNREGISTERED, as_champion
from training.metrics import calibration_bins, evaluate_binary
from training.pipeline import TrainingError, TrainingSettings, train_from_sources
from training.registry import Champion, load_champion
from training.tracking import TARGETS

ModelsAt = Callable[[pd.Timestamp], Mapping[str, Champion]]

ARR_WEIGHTED_TARGET = "churn"
ARR_FEATURE = "arr"
SUMMARY_METRICS: tuple[str, ...] = (
    "n_rows",
    "positive_rate",
    "mean_predicted",
    "roc_auc",
    "pr_auc",
    "brier",
    "ece",
    "lift_top_decile",
    "predicted_arr_at_risk",
    "realised_churned_arr",
    "arr_at_risk_rel_error",
)
# A walk-forward model needs this many labelled snapshots before its date (train,
# calibrate, evaluate: `training.pipeline.split_snapshots`).
MIN_TRAINING_SNAPSHOTS = 3


@dataclass(frozen=True)
class Backtest:
    """Predictions against outcomes at several past as-of dates."""

    # account_id, as_of, arr, the labels, p_<target> and <target>_model per target
    predictions: pd.DataFrame
    # one row per (as_of, target): model, out_of_time, then SUMMARY_METRICS
    summary: pd.DataFrame
    # reliability bins per (as_of, target): lower, upper, count, mean_predicted, observed_rate
    calibration: pd.DataFrame


def backtest_dates(
    snapshot_dates: Sequence[pd.Timestamp],
    horizon_days: int,
    count: int = 4,
    step: int = 3,
    min_training_snapshots: int = MIN_TRAINING_SNAPSHOTS,
) -> list[pd.Timestamp]:
    """Up to `count` labelled snapshot dates, `step` snapshots apart, latest last.

    `snapshot_dates` are the labelled snapshots (`features.default_snapshot_dates`).
    Going back from the latest, a date is kept only when at least
    `min_training_snapshots` earlier snapshots have label windows that end by
    it (so a walk-forward model can be trained at it).
    """
    if count < 1 or step < 1:
        raise ValueError("count and step must be at least 1")
    days = sorted(pd.Timestamp(day) for day in snapshot_dates)
    horizon = pd.Timedelta(days=horizon_days)

    def trainable(day: pd.Timestamp) -> bool:
        return sum(earlier + horizon <= day for earlier in days) >= min_training_snapshots

    chosen = [day for day in days[::-1][::step] if trainable(day)][:count]
    if not chosen:
        raise TrainingError(
            f"no snapshot has {min_training_snapshots} earlier labelled snapshots with a "
            f"{horizon_days}-day horizon to train on: the data is too short for a backtest "
            "(use a shorter horizon or more history)"
        )
    return sorted(chosen)


def fixed_models(models: Mapping[str, Champion]) -> ModelsAt:
    """The same models at every date."""
    fixed = dict(models)
    return lambda day: fixed


def champion_models(prefix: str | None = None, uri: str | None = None) -> ModelsAt:
    """The current churn and upsell champions of the registry, at every date."""
    return fixed_models({target: load_champion(target, prefix, uri) for target in TARGETS})


def walk_forward_models(
    tables: Tables,
    horizon_days: int,
    settings: TrainingSettings,
    panel: pd.DataFrame | None = None,
) -> ModelsAt:
    """At each date t, models trained as `portfolio train --as-of t` would, without tracking.

    `panel` (the training panel over the labelled snapshots, same horizon) is
    reused instead of rebuilding the snapshots for every date.
    """
    untracked = replace(settings, track=False, register=False, promote=False)

    def models_at(day: pd.Timestamp) -> Mapping[str, Champion]:
        result = train_from_sources(
            tables, as_of=day, horizon_days=horizon_days, settings=untracked, panel=panel
        )
        return {
            target: as_champion(trained, f"{target} trained as of {day.date()}")
            for target, trained in result.targets.items()
        }

    return models_at


def model_label(model: Champion) -> str:
    """`name vN` for a registered version, the name alone for an unregistered model."""
    return model.name if model.version == UNREGISTERED else f"{model.name} v{model.version}"


def _out_of_time(model: Champion, day: pd.Timestamp) -> bool | None:
    """Whether `day` is at or after the model's evaluation snapshot (None when unknown)."""
    evaluated = model.metadata.get("evaluation_as_of")
    if not evaluated:
        return None
    return bool(day >= pd.Timestamp(evaluated))


def run_backtest(
    panel: pd.DataFrame,
    as_of_dates: Sequence[pd.Timestamp],
    models_at: ModelsAt,
    targets: Sequence[str] = TARGETS,
    n_bins: int = 10,
) -> Backtest:
    """Score the panel's rows at each date with `models_at(date)` and compare with the labels."""
    as_of_column = pd.to_datetime(panel["as_of"])
    days = sorted({pd.Timestamp(day) for day in as_of_dates})
    absent = [day for day in days if not (as_of_column == day).any()]
    if absent:
        raise TrainingError(
            "the panel has no rows at backtest date(s) "
            f"{', '.join(str(day.date()) for day in absent)}"
        )
    predictions, summary, calibration = [], [], []
    for day in days:
        rows = panel[as_of_column == day].reset_index(drop=True)
        models = models_at(day)
        missing = [target for target in targets if target not in models]
        if missing:
            raise TrainingError(f"no {', '.join(missing)} model at {day.date()}")
        scored = rows[["account_id", "as_of", ARR_FEATURE, *targets]].copy()
        arr = rows[ARR_FEATURE].to_numpy(dtype=np.float64)
        for target in targets:
            model = models[target]
            p = model.model.predict_proba(rows)
            y = rows[target].to_numpy(dtype=np.float64)
            scored[f"p_{target}"] = p
            scored[f"{target}_model"] = model_label(model)
            metrics = evaluate_binary(y, p, arr if target == ARR_WEIGHTED_TARGET else None)
            summary.append(
                {
                    "as_of": day,
                    "target": target,
                    "model": model_label(model),
                    "out_of_time": _out_of_time(model, day),
                    **{name: metrics.get(name, np.nan) for name in SUMMARY_METRICS},
                }
            )
            calibration.extend(
                {"as_of": day, "target": target, **bin_}
                for bin_ in calibration_bins(y, p, n_bins)
            )
        predictions.append(scored)
    summary_frame = pd.DataFrame(summary)
    summary_frame["n_rows"] = summary_frame["n_rows"].astype("int64")
    summary_frame["out_of_time"] = summary_frame["out_of_time"].astype("boolean")
    return Backtest(
        predictions=pd.concat(predictions, ignore_index=True),
        summary=summary_frame,
        calibration=pd.DataFrame(calibration).astype({"count": "int64"}),
    )


__all__ = [
    "Backtest",
    "ModelsAt",
    "backtest_dates",
    "champion_models",
    "fixed_models",
    "model_label",
    "run_backtest",
    "walk_forward_models",
]
