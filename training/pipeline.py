"""Training end to end: panel -> split -> tune -> fit + calibrate -> evaluate -> log -> gate.

Two entry points, one per kind of data:

- `train_from_sources(tables, as_of, horizon_days, target)`: contract tables.
  Snapshots every month up to `as_of` whose label window ends by `as_of`;
  the latest is the evaluation snapshot, the `calibration_snapshots` before it
  (whose label windows end by the evaluation date) validate the tuning and fit
  the calibrator, and the earlier ones (whose label windows end before the
  calibration snapshots) train the booster. No label window of a training row
  overlaps a later fold, unless the data is too short for that (then the split
  says so and is recorded).
- `train_from_table(path_or_frame, id_col, label_col, target)`: a flat table
  with one row per account. A stratified 20% is held out for evaluation;
  tuning uses stratified k-fold cross-validation on the rest, and the
  calibrator is fitted on out-of-fold scores.

Both compare the model with the baselines on the same evaluation rows, log
everything to MLflow, register a new version and pass it through the champion
gate. `score_table` scores a flat table with the champions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from features.contract import Tables
from training.baselines import (
    BaselineNotApplicable,
    HealthScoreBaseline,
    fit_logistic_baseline,
    logistic_probabilities,
)
from training.flat_table import TableError, prepare_flat_table, read_table
from training.metrics import evaluate_binary
from training.model import CalibratedBoostedClassifier, CalibrationMethod
from training.registry import (
    ChampionNotFound,
    GateDecision,
    GateSettings,
    apply_champion_gate,
    load_champion,
)
from training.tracking import TARGETS, LoggedVersion, TrainingRecord, log_training_run, tracking_uri
from training.tuning import TuningResult, TuningSettings, tune_cv, tune_holdout

logger = logging.getLogger(__name__)

TargetChoice = Literal["churn", "upsell", "all"]
LABEL_FOR_TARGET = {"churn": "churn", "upsell": "upsell"}
SOURCES_DESIGN = "time split"
TABLE_DESIGN = "flat table"


class TrainingError(ValueError):
    """Training cannot run on this data (the message says why and what to change)."""


@dataclass(frozen=True)
class TrainingSettings:
    """How to train. The defaults are what `portfolio train` uses."""

    tuning: TuningSettings = field(default_factory=TuningSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    calibration: CalibrationMethod = "auto"
    # time split: snapshots every `snapshot_freq` (monthly), the latest
    # `max_snapshots` of them; when the history gives fewer than `min_snapshots`,
    # the finer `fallback_freqs` are tried in turn (short histories such as CDNOW)
    snapshot_freq: str = "MS"
    fallback_freqs: tuple[str, ...] = ("SMS", "W-MON")
    min_snapshots: int = 8
    max_snapshots: int | None = 24
    calibration_snapshots: int = 3
    # flat tables: share held out for evaluation
    evaluation_fraction: float = 0.2
    # rows the logistic baseline is fitted on (a seeded sample when there are more)
    baseline_max_rows: int = 200_000
    track: bool = True  # log to MLflow
    register: bool = True  # register a model version (needs track)
    promote: bool = True  # pass new versions through the champion gate (needs register)
    model_prefix: str | None = None
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        if not 0.05 <= self.evaluation_fraction <= 0.5:
            raise ValueError("evaluation_fraction must be between 0.05 and 0.5")
        if self.calibration_snapshots < 1:
            raise ValueError("calibration_snapshots must be at least 1")
        if self.max_snapshots is not None and self.max_snapshots < 3:
            raise ValueError("max_snapshots must be at least 3 (train, calibrate, evaluate)")

    @property
    def seed(self) -> int:
        return self.tuning.seed


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    target: str | None = None
    done: int | None = None
    total: int | None = None
    detail: str = ""


ProgressHook = Callable[[ProgressEvent], None]


@dataclass
class TargetResult:
    target: str
    model: CalibratedBoostedClassifier
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float] | str]
    tuning: TuningResult
    data: dict[str, Any]
    duration_seconds: float
    logged: LoggedVersion | None = None
    gate: GateDecision | None = None
    # the evaluation rows: account_id (as_of and arr for snapshots), label, p
    evaluation: pd.DataFrame | None = None
    # What logging needs (evaluation features, labels and scores among it), so that
    # `log_target` and `gate_target` can log, register and gate a result later.
    record: TrainingRecord | None = None

    @property
    def model_version(self) -> str | None:
        return self.logged.version if self.logged else None

    @property
    def promoted(self) -> bool:
        return bool(self.gate and self.gate.promote)

    def beats(self, baseline: str, metric: str = "roc_auc") -> bool | None:
        """Whether the model beats a baseline on `metric` (None when the baseline is absent)."""
        values = self.baselines.get(baseline)
        if not isinstance(values, dict):
            return None
        lower_is_better = metric in {"brier", "log_loss", "ece"}
        mine, theirs = self.metrics[metric], values[metric]
        return mine < theirs if lower_is_better else mine > theirs


@dataclass
class TrainingResult:
    design: str
    targets: dict[str, TargetResult]
    feature_set_name: str
    feature_set_version: str
    tracking_uri: str | None
    duration_seconds: float
    data: dict[str, Any] = field(default_factory=dict)
    table_notes: list[Any] = field(default_factory=list)


# ------------------------------------------------------------------ the time split


@dataclass(frozen=True)
class TimeSplit:
    train: list[pd.Timestamp]
    calibration: list[pd.Timestamp]
    evaluation: pd.Timestamp
    strict: bool

    @property
    def note(self) -> str:
        if self.strict:
            return "label windows of earlier folds end before later folds start"
        return (
            "too few snapshots for non-overlapping label windows: earlier folds' label "
            "windows overlap later folds"
        )


def split_snapshots(
    dates: Sequence[pd.Timestamp], horizon_days: int, calibration_snapshots: int = 3
) -> TimeSplit:
    """Train / calibration / evaluation snapshots, latest last.

    Strict when possible: calibration snapshots end their label window by the
    evaluation date, training snapshots by the first calibration date.
    Otherwise (short histories) the folds are simply consecutive.
    """
    days = sorted(pd.Timestamp(d) for d in dates)
    if len(days) < 3:
        raise TrainingError(
            f"only {len(days)} labelled snapshot(s) in the data; at least 3 are needed "
            f"(train, calibrate, evaluate) with a {horizon_days}-day horizon: use a shorter "
            "--horizon-days, a later --as-of or more history"
        )
    horizon = pd.Timedelta(days=horizon_days)
    evaluation = days[-1]
    pool = [d for d in days[:-1] if d + horizon <= evaluation]
    if len(pool) >= 2:
        calibration = pool[-min(calibration_snapshots, len(pool) - 1) :]
        train = [d for d in pool if d + horizon <= calibration[0]]
        if train:
            return TimeSplit(train, calibration, evaluation, strict=True)
    earlier = days[:-1]
    k = min(calibration_snapshots, len(earlier) - 1)
    return TimeSplit(earlier[:-k], earlier[-k:], evaluation, strict=False)


def _span(days: Sequence[pd.Timestamp]) -> str:
    if not days:
        return "none"
    first, last = days[0].date(), days[-1].date()
    return f"{first}" if first == last else f"{first}..{last} ({len(days)} snapshots)"


# ------------------------------------------------------------------ one target


def _targets(target: str) -> list[str]:
    if target == "all":
        return list(TARGETS)
    if target not in TARGETS:
        raise TrainingError(f"unknown target {target!r}; use churn, upsell or all")
    return [target]


def _require_both_classes(y: np.ndarray, target: str, fold: str) -> None:
    positives = int(np.sum(y))
    if positives == 0 or positives == len(y):
        kind = "no positive" if positives == 0 else "no negative"
        raise TrainingError(
            f"the {fold} rows ({len(y)}) have {kind} {target} label; the data cannot train "
            f"or evaluate a {target} model (try a longer horizon or more history)"
        )


def _sample_rows(X: pd.DataFrame, y: np.ndarray, max_rows: int, seed: int):
    if len(X) <= max_rows:
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(len(X), size=max_rows, replace=False))
    return X.iloc[rows], y[rows]


def _baselines(
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_cal: pd.DataFrame | None,
    y_cal: np.ndarray | None,
    X_eval: pd.DataFrame,
    y_eval: np.ndarray,
    arr_eval: np.ndarray | None,
    settings: TrainingSettings,
) -> tuple[dict[str, dict[str, float] | str], dict[str, np.ndarray]]:
    metrics: dict[str, dict[str, float] | str] = {}
    scores: dict[str, np.ndarray] = {}
    X_fit, y_fit = _sample_rows(X_train, y_train, settings.baseline_max_rows, settings.seed)
    logistic = fit_logistic_baseline(X_fit, y_fit, seed=settings.seed)
    scores["logistic"] = logistic_probabilities(logistic, X_eval)
    metrics["logistic"] = evaluate_binary(y_eval, scores["logistic"], arr_eval)
    try:
        health = HealthScoreBaseline().fit(X_train, y_train, X_cal, y_cal)
        scores["health_score"] = health.predict_proba(X_eval)
        metrics["health_score"] = evaluate_binary(y_eval, scores["health_score"], arr_eval)
    except BaselineNotApplicable as exc:
        metrics["health_score"] = f"not applicable: {exc}"
    return metrics, scores


def _train_target(
    *,
    target: str,
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_cal: pd.DataFrame | None,
    y_cal: np.ndarray | None,
    X_eval: pd.DataFrame,
    y_eval: np.ndarray,
    arr_eval: np.ndarray | None,
    evaluation_keys: pd.DataFrame,
    design: str,
    data: dict[str, Any],
    feature_set_name: str,
    feature_set_version: str,
    metadata: dict[str, Any],
    settings: TrainingSettings,
    progress: ProgressHook | None,
) -> TargetResult:
    started = time.perf_counter()
    emit = progress or (lambda event: None)
    _require_both_classes(y_train, target, "training")
    if y_cal is not None:
        _require_both_classes(y_cal, target, "calibration")
    _require_both_classes(y_eval, target, "evaluation")

    def on_trial(done: int, total: int, best: float | None) -> None:
        detail = f"best log loss {best:.4f}" if best is not None else ""
        emit(ProgressEvent("tuning", target, done, total, detail))

    emit(ProgressEvent("tuning", target, 0, settings.tuning.n_trials))
    if X_cal is not None and y_cal is not None:
        tuning = tune_holdout(X_train, y_train, X_cal, y_cal, settings.tuning, on_trial)
    else:
        tuning = tune_cv(X_train, y_train, settings.tuning, on_trial)

    emit(ProgressEvent("fitting", target, detail=f"{tuning.best_params['n_estimators']} rounds"))
    model = CalibratedBoostedClassifier(**tuning.best_params, calibration=settings.calibration)
    model.fit(X_train, y_train, X_cal, y_cal, metadata={**metadata, "target": target})
    p_eval = model.predict_proba(X_eval)
    metrics = evaluate_binary(y_eval, p_eval, arr_eval)

    emit(ProgressEvent("baselines", target))
    baselines, baseline_scores = _baselines(
        X_train, y_train, X_cal, y_cal, X_eval, y_eval, arr_eval, settings
    )
    result = TargetResult(
        target=target,
        model=model,
        metrics=metrics,
        baselines=baselines,
        tuning=tuning,
        data=data,
        duration_seconds=0.0,
        evaluation=evaluation_keys.reset_index(drop=True).assign(label=y_eval, p=p_eval),
        record=TrainingRecord(
            target=target,
            model=model,
            metrics=metrics,
            baselines=baselines,
            evaluation_labels=y_eval,
            evaluation_scores={"model": p_eval, **baseline_scores},
            tuning=tuning,
            feature_set_name=feature_set_name,
            feature_set_version=feature_set_version,
            design=design,
            data=data,
            params={
                "calibration.requested": settings.calibration,
                "tuning.n_trials": settings.tuning.n_trials,
                "tuning.timeout_seconds": settings.tuning.timeout_seconds,
                "tuning.seed": settings.tuning.seed,
                "gate.auc_tolerance": settings.gate.auc_tolerance,
            },
            input_example=X_eval,
        ),
    )
    if settings.track:
        log_target(result, settings, progress)
    result.duration_seconds = time.perf_counter() - started
    emit(ProgressEvent("done", target))
    return result


def log_target(
    result: TargetResult, settings: TrainingSettings, progress: ProgressHook | None = None
) -> TargetResult:
    """Log a trained target to MLflow, as `portfolio train` does after fitting.

    Registers a new version when `settings.register`, then passes it through
    the champion gate (`gate_target`) when `settings.promote`. A result trained
    with `track=False` (e.g. a challenger in a notebook) can be logged later.
    """
    emit = progress or (lambda event: None)
    if result.record is None:
        raise TrainingError(f"the {result.target} result holds no training record to log")
    if result.logged is not None:
        raise TrainingError(
            f"the {result.target} model is already logged (run {result.logged.run_id})"
        )
    emit(ProgressEvent("logging", result.target))
    result.logged = log_training_run(
        result.record,
        register=settings.register,
        prefix=settings.model_prefix,
        uri=settings.tracking_uri,
    )
    if settings.register and settings.promote and result.logged.version is not None:
        emit(ProgressEvent("gate", result.target))
        gate_target(result, settings)
    return result


def gate_target(result: TargetResult, settings: TrainingSettings) -> GateDecision:
    """The champion gate on the result's own evaluation rows; may move `@champion`.

    The call `portfolio train` makes (`training.registry.apply_champion_gate`):
    the current champion is re-scored on the rows the new version was evaluated
    on; the decision is tagged on the version and a pass promotes it.
    """
    if result.logged is None or result.logged.version is None:
        raise TrainingError(
            f"the {result.target} model has no registered version: register it first "
            "(log_target with register=True)"
        )
    if result.record is None:
        raise TrainingError(f"the {result.target} result holds no evaluation rows")
    record = result.record
    result.gate = apply_champion_gate(
        result.target,
        result.logged.version,
        record.input_example,
        np.asarray(record.evaluation_labels),
        np.asarray(record.evaluation_scores["model"]),
        evaluation=str(result.data.get("evaluation", "")),
        prefix=settings.model_prefix,
        uri=settings.tracking_uri,
        settings=settings.gate,
    )
    return result.gate


# ------------------------------------------------------------------ entry points


def _panel_over(
    tables: Tables, panel: pd.DataFrame, dates: Sequence[pd.Timestamp], horizon_days: int
) -> pd.DataFrame:
    """A given training panel's rows at `dates`; snapshots it lacks are built from `tables`."""
    from features import LABEL_COLUMNS, build_training_panel

    absent = [c for c in ("account_id", "as_of", *LABEL_COLUMNS) if c not in panel.columns]
    if absent:
        raise TrainingError(
            f"the given panel has no {', '.join(absent)} column(s): build it with "
            "features.build_training_panel"
        )
    as_of_column = pd.to_datetime(panel["as_of"])
    rows = panel[as_of_column.isin(dates)]
    present = set(as_of_column.unique())
    missing = [day for day in dates if day not in present]
    if not missing:
        return rows.reset_index(drop=True)
    logger.info(
        "building %d snapshot(s) the given panel lacks: %s",
        len(missing),
        ", ".join(str(day.date()) for day in missing),
    )
    built = build_training_panel(tables, missing, horizon_days)
    if list(built.columns) != list(panel.columns):
        raise TrainingError(
            "the given panel's columns differ from the panel these tables give: build it "
            "with features.build_training_panel(tables, dates, horizon_days)"
        )
    both = pd.concat([rows, built], ignore_index=True)
    return both.sort_values(["as_of", "account_id"], kind="stable").reset_index(drop=True)


def train_from_sources(
    tables: Tables,
    as_of: Any = None,
    horizon_days: int = 90,
    target: TargetChoice | str = "all",
    settings: TrainingSettings | None = None,
    progress: ProgressHook | None = None,
    panel: pd.DataFrame | None = None,
) -> TrainingResult:
    """Train, evaluate, log and gate churn and/or upsell models on contract tables.

    `panel`: a training panel already built from these tables with the same
    horizon (`features.build_training_panel`); the snapshots the split needs
    are taken from it, and only those it lacks are built.
    """
    from features import (
        FEATURE_SET_NAME,
        FEATURE_SET_VERSION,
        build_training_panel,
        default_snapshot_dates,
        feature_columns,
    )

    settings = settings or TrainingSettings()
    started = time.perf_counter()
    emit = progress or (lambda event: None)
    targets = _targets(target)
    if horizon_days < 1:
        raise TrainingError("--horizon-days must be at least 1")
    for freq in (settings.snapshot_freq, *settings.fallback_freqs):
        dates = default_snapshot_dates(tables, as_of, horizon_days, freq=freq)
        if len(dates) >= settings.min_snapshots:
            break
    if settings.max_snapshots is not None:
        dates = dates[-settings.max_snapshots :]
    split = split_snapshots(dates, horizon_days, settings.calibration_snapshots)
    used = sorted({*split.train, *split.calibration, split.evaluation})
    emit(ProgressEvent("panel", None, 0, len(used), f"{len(used)} snapshots"))
    if panel is None:
        panel = build_training_panel(tables, used, horizon_days)
    else:
        panel = _panel_over(tables, panel, used, horizon_days)
    if panel.empty:
        raise TrainingError("the training panel is empty: no active account at any snapshot")
    features = feature_columns(panel)
    as_of_column = pd.to_datetime(panel["as_of"])
    folds = {
        "train": panel[as_of_column.isin(split.train)],
        "calibration": panel[as_of_column.isin(split.calibration)],
        "evaluation": panel[as_of_column == split.evaluation],
    }
    for fold, frame in folds.items():
        if frame.empty:
            raise TrainingError(f"no active account in the {fold} snapshots")
    data = {
        "as_of": str(pd.Timestamp(as_of).date()) if as_of is not None else "latest in the data",
        "horizon_days": horizon_days,
        "train": _span(split.train),
        "calibration": _span(split.calibration),
        "evaluation": f"snapshot {split.evaluation.date()}",
        "split": split.note,
        "snapshot_frequency": freq,
        "rows_train": len(folds["train"]),
        "rows_calibration": len(folds["calibration"]),
        "rows_evaluation": len(folds["evaluation"]),
        "features": len(features),
    }
    metadata = {
        "source_kind": "sources",
        "design": SOURCES_DESIGN,
        "feature_set_name": FEATURE_SET_NAME,
        "feature_set_version": FEATURE_SET_VERSION,
        "horizon_days": horizon_days,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "evaluation_as_of": str(split.evaluation.date()),
        "data": data,
    }
    results: dict[str, TargetResult] = {}
    for name in targets:
        label = LABEL_FOR_TARGET[name]
        fold_rates = {f"positive_rate_{k}": float(v[label].mean()) for k, v in folds.items()}
        results[name] = _train_target(
            target=name,
            X_train=folds["train"][features],
            y_train=folds["train"][label].to_numpy(dtype=np.float64),
            X_cal=folds["calibration"][features],
            y_cal=folds["calibration"][label].to_numpy(dtype=np.float64),
            X_eval=folds["evaluation"][features],
            y_eval=folds["evaluation"][label].to_numpy(dtype=np.float64),
            arr_eval=folds["evaluation"]["arr"].to_numpy(dtype=np.float64)
            if name == "churn" and "arr" in folds["evaluation"]
            else None,
            evaluation_keys=folds["evaluation"][
                [c for c in ("account_id", "as_of", "arr") if c in folds["evaluation"]]
            ],
            design=SOURCES_DESIGN,
            data={**data, **fold_rates},
            feature_set_name=FEATURE_SET_NAME,
            feature_set_version=FEATURE_SET_VERSION,
            metadata=metadata,
            settings=settings,
            progress=progress,
        )
    return TrainingResult(
        design=SOURCES_DESIGN,
        targets=results,
        feature_set_name=FEATURE_SET_NAME,
        feature_set_version=FEATURE_SET_VERSION,
        tracking_uri=tracking_uri(settings.tracking_uri) if settings.track else None,
        duration_seconds=time.perf_counter() - started,
        data=data,
    )


def _table_name(path_or_frame: str | Path | pd.DataFrame) -> str:
    if isinstance(path_or_frame, pd.DataFrame):
        return "frame"
    return Path(path_or_frame).name


def train_from_table(
    path_or_frame: str | Path | pd.DataFrame,
    id_col: str,
    label_col: str,
    target: Literal["churn", "upsell"] | str = "churn",
    settings: TrainingSettings | None = None,
    progress: ProgressHook | None = None,
) -> TrainingResult:
    """Train, evaluate, log and gate one model on a flat one-row-per-account table."""
    settings = settings or TrainingSettings()
    started = time.perf_counter()
    if target not in TARGETS:
        raise TrainingError(f"unknown target {target!r}; use churn or upsell")
    name = _table_name(path_or_frame)
    frame = (
        path_or_frame.copy()
        if isinstance(path_or_frame, pd.DataFrame)
        else read_table(path_or_frame)
    )
    table = prepare_flat_table(frame, id_col, label_col, path=name)
    assert table.y is not None
    n_minority = int(min(table.y.sum(), len(table.y) - table.y.sum()))
    if n_minority < 10:
        raise TrainingError(
            f"{name}: only {n_minority} row(s) in the smaller class of {label_col!r}; "
            "at least 10 are needed to hold out an evaluation set"
        )
    rows = np.arange(len(table.y))
    dev_rows, eval_rows = train_test_split(
        rows,
        test_size=settings.evaluation_fraction,
        stratify=table.y,
        random_state=settings.seed,
    )
    X_dev, y_dev = table.X.iloc[dev_rows], table.y[dev_rows].astype(np.float64)
    X_eval, y_eval = table.X.iloc[eval_rows], table.y[eval_rows].astype(np.float64)
    feature_set_name = f"table:{name}"
    feature_set_version = table.feature_set_version
    data = {
        "table": name,
        "rows": len(table.y),
        "id_column": id_col,
        "label_column": label_col,
        "positive_rate": float(table.y.mean()),
        "train": f"{len(dev_rows)} rows ({settings.tuning.cv_folds}-fold stratified CV)",
        "evaluation": f"stratified {settings.evaluation_fraction:.0%} hold-out ({len(eval_rows)} rows)",
        "features": table.X.shape[1],
        "rows_train": len(dev_rows),
        "rows_evaluation": len(eval_rows),
    }
    metadata = {
        "source_kind": "table",
        "design": TABLE_DESIGN,
        "feature_set_name": feature_set_name,
        "feature_set_version": feature_set_version,
        "id_column": id_col,
        "label_column": label_col,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": data,
        "table_notes": [note.__dict__ for note in table.report.notes],
    }
    result = _train_target(
        target=target,
        X_train=X_dev,
        y_train=y_dev,
        X_cal=None,
        y_cal=None,
        X_eval=X_eval,
        y_eval=y_eval,
        arr_eval=None,
        evaluation_keys=pd.DataFrame({"account_id": table.ids.iloc[eval_rows].to_numpy()}),
        design=TABLE_DESIGN,
        data=data,
        feature_set_name=feature_set_name,
        feature_set_version=feature_set_version,
        metadata=metadata,
        settings=settings,
        progress=progress,
    )
    return TrainingResult(
        design=TABLE_DESIGN,
        targets={target: result},
        feature_set_name=feature_set_name,
        feature_set_version=feature_set_version,
        tracking_uri=tracking_uri(settings.tracking_uri) if settings.track else None,
        duration_seconds=time.perf_counter() - started,
        data=data,
        table_notes=list(table.report.notes),
    )


def score_table(
    path_or_frame: str | Path | pd.DataFrame,
    id_col: str,
    target: str | None = None,
    prefix: str | None = None,
    uri: str | None = None,
) -> pd.DataFrame:
    """Score a flat table with the champions: account_id, p_<target>, <target>_model_version.

    `target=None` scores every target whose champion was trained on a flat
    table (`train_from_table`). Feature columns absent from the table count
    as missing; extra columns (such as the label) are ignored.
    """
    targets = [target] if target is not None else list(TARGETS)
    champions = {}
    problems = []
    for name in targets:
        if name not in TARGETS:
            raise TrainingError(f"unknown target {name!r}; use churn or upsell")
        try:
            champion = load_champion(name, prefix, uri)
        except ChampionNotFound as exc:
            problems.append(str(exc))
            continue
        if target is None and champion.model.metadata_.get("source_kind") != "table":
            problems.append(f"the {name} champion was not trained on a flat table")
            continue
        champions[name] = champion
    if not champions:
        raise TrainingError(
            "no champion to score a flat table with: " + "; ".join(problems)
            if problems
            else "no champion found"
        )
    frame = (
        path_or_frame.copy()
        if isinstance(path_or_frame, pd.DataFrame)
        else read_table(path_or_frame)
    )
    name = _table_name(path_or_frame)
    out: pd.DataFrame | None = None
    for target_name, champion in champions.items():
        model = champion.model
        table = prepare_flat_table(
            frame, id_col, None, path=name, feature_columns=list(model.feature_names_)
        )
        if out is None:
            out = pd.DataFrame({"account_id": table.ids.astype("string").to_numpy()})
        out[f"p_{target_name}"] = model.predict_proba(table.X)
        out[f"{target_name}_model_version"] = champion.version
        absent = [n.column for n in table.report.notes if n.action == "missing"]
        if absent:
            logger.warning(
                "%s: %d feature column(s) of the %s model are absent and scored as missing: %s",
                name,
                len(absent),
                target_name,
                ", ".join(absent[:10]),
            )
    assert out is not None
    return out


__all__ = [
    "ProgressEvent",
    "TableError",
    "TargetResult",
    "TimeSplit",
    "TrainingError",
    "TrainingResult",
    "TrainingSettings",
    "gate_target",
    "log_target",
    "score_table",
    "split_snapshots",
    "train_from_sources",
    "train_from_table",
]
