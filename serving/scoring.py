"""Scoring accounts with the churn and upsell champions, with reasons.

The one place where feature rows become scores: the nightly job calls
`score_accounts` on a feature frame, the online service `score_records` on
plain dicts (no pandas on its hot path). Both run the same steps on the
same float matrix, so a record scored online gives exactly what its row
gives in the nightly frame:

    rows -> model matrix (`CalibratedBoostedClassifier.prepare`)
         -> raw score + per-feature TreeSHAP contributions (`serving.tree_shap`: both models
            side by side, the raw score bit for bit LightGBM's; without exact reasons the
            raw score is LightGBM's `predict`)
         -> calibrated probability (the model's calibrator)
         -> top-k reasons per model

Each result has `account_id`, `as_of`, `p_churn`, `p_upsell`, `arr` (the `arr`
feature), `expected_arr_at_risk` (= p_churn x arr), `reasons` (a list of
`{model, rank, feature, value, contribution, text}`, churn's first, then
upsell's; see `serving.reasons`), and the name and version of each model.
Priority, tiers and expected expansion are added downstream
(`serving.prioritisation`).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from serving.reasons import (
    DEFAULT_REASON_METHOD,
    REASON_METHODS,
    PathAttributions,
    ReasonMethod,
    booster_threads,
    reason_entries,
    top_contributions,
)
from serving.tree_shap import PARALLEL_MIN_ROWS, TreeShapTables, explain_all
from training.model import CalibratedBoostedClassifier, apply_calibrator, numeric_column
from training.registry import Champion

ARR_FEATURE = "arr"
ID_COLUMN = "account_id"
AS_OF_COLUMN = "as_of"

SCORE_COLUMNS: tuple[str, ...] = (
    "account_id",
    "as_of",
    "p_churn",
    "p_upsell",
    "arr",
    "expected_arr_at_risk",
    "reasons",
    "churn_model",
    "churn_model_version",
    "upsell_model",
    "upsell_model_version",
)


class ScoringInputError(ValueError):
    """Rows that cannot be scored; the message names the accounts and the field."""


# ------------------------------------------------------------------ per-model state

# Per-booster tables, built on first use and dropped with the booster (a swapped-out champion).
_PATH_ATTRIBUTIONS: weakref.WeakKeyDictionary[lgb.Booster, PathAttributions] = (
    weakref.WeakKeyDictionary()
)
_TREE_SHAP_TABLES: weakref.WeakKeyDictionary[lgb.Booster, TreeShapTables] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()


def path_attributions(model: CalibratedBoostedClassifier) -> PathAttributions:
    """The model's per-leaf path attributions, built once per booster and reused."""
    return _cached(_PATH_ATTRIBUTIONS, model.booster_, PathAttributions.from_booster)


def tree_shap_tables(model: CalibratedBoostedClassifier) -> TreeShapTables:
    """The model's compiled TreeSHAP tables, built once per booster and reused."""
    return _cached(_TREE_SHAP_TABLES, model.booster_, TreeShapTables.from_booster)


def prepare_reasons(
    model: CalibratedBoostedClassifier, reason_method: ReasonMethod = DEFAULT_REASON_METHOD
) -> None:
    """Build the model's reason tables now (e.g. at service start-up, before traffic)."""
    if reason_method == "tree_shap":
        tables = tree_shap_tables(model)
        # Compiles (or loads from Numba's cache) the kernel; the second call starts the pool.
        tables.contributions(np.full((1, tables.n_features), np.nan))
        tables.contributions(np.full((PARALLEL_MIN_ROWS, tables.n_features), np.nan))
    else:
        path_attributions(model)


def _cached(cache, booster, build):
    with _CACHE_LOCK:
        cached = cache.get(booster)
    if cached is not None:
        return cached
    built = build(booster)
    with _CACHE_LOCK:
        return cache.setdefault(booster, built)


@dataclass(frozen=True)
class ModelScores:
    """One model's output for n rows: probabilities and the top reasons."""

    probability: np.ndarray
    raw_score: np.ndarray
    reasons: list[list[dict[str, Any]]]


def score_matrix(
    target: str,
    model: CalibratedBoostedClassifier,
    matrix: np.ndarray,
    top_k: int,
    reason_method: ReasonMethod = DEFAULT_REASON_METHOD,
) -> ModelScores:
    """Score a model matrix (from `model.prepare`) with one model; `target` labels the reasons."""
    return _score_matrices([(target, model, matrix)], top_k, reason_method)[0]


def _score_matrices(
    jobs: Sequence[tuple[str, CalibratedBoostedClassifier, np.ndarray]],
    top_k: int,
    reason_method: ReasonMethod,
) -> list[ModelScores]:
    """`score_matrix` for several (target, model, matrix): exact TreeSHAP runs for all the
    models side by side (`serving.tree_shap.explain_all`), which also gives the raw scores."""
    if reason_method not in REASON_METHODS:
        raise ValueError(f"reason_method must be one of {REASON_METHODS}, got {reason_method!r}")
    if reason_method == "tree_shap" and top_k > 0:
        explained = explain_all([(tree_shap_tables(model), matrix) for _, model, matrix in jobs])
    else:
        explained = [_raw_and_contributions(model, matrix, top_k) for _, model, matrix in jobs]
    return [
        _model_scores(target, model, matrix, raw, contributions, top_k)
        for (target, model, matrix), (raw, contributions) in zip(jobs, explained, strict=True)
    ]


def _raw_and_contributions(
    model: CalibratedBoostedClassifier, matrix: np.ndarray, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """LightGBM's raw scores, with path attributions when reasons are asked for."""
    n_rows = matrix.shape[0]
    booster = model.booster_
    threads = booster_threads(n_rows)
    if n_rows == 0:
        return np.empty(0), np.empty((0, matrix.shape[1]))
    if top_k <= 0:
        raw = np.asarray(booster.predict(matrix, raw_score=True, **threads), dtype=np.float64)
        return raw, np.empty((n_rows, 0))
    leaves = booster.predict(matrix, pred_leaf=True, **threads)
    return path_attributions(model).attribute(np.asarray(leaves).reshape(n_rows, -1))


def _model_scores(
    target: str,
    model: CalibratedBoostedClassifier,
    matrix: np.ndarray,
    raw: np.ndarray,
    contributions: np.ndarray,
    top_k: int,
) -> ModelScores:
    n_rows = matrix.shape[0]
    probability = apply_calibrator(model.calibrator_, raw)
    if top_k <= 0 or n_rows == 0:
        return ModelScores(probability, raw, [[] for _ in range(n_rows)])
    indices, values = top_contributions(contributions, top_k)
    names = model.feature_names_
    levels = {names.index(name): tuple(lv) for name, lv in model.categories_.items()}
    reasons = reason_entries(target, indices, values, matrix, names, levels)
    return ModelScores(probability, raw, reasons)


# ------------------------------------------------------------------ frames (nightly job)


def score_accounts(
    features: pd.DataFrame,
    churn: Champion,
    upsell: Champion,
    top_k: int = 3,
    reason_method: ReasonMethod = DEFAULT_REASON_METHOD,
) -> pd.DataFrame:
    """Score a feature frame (`account_id`, `as_of`, features) with both champions.

    One row per input row, in the input's order, with the columns of
    `SCORE_COLUMNS`. Raises `ScoringInputError` naming the accounts whose
    `arr` is missing or negative, or a ValueError naming a non-numeric column.
    """
    if ID_COLUMN not in features.columns:
        raise ScoringInputError(f"the feature frame has no {ID_COLUMN!r} column")
    if ARR_FEATURE not in features.columns:
        raise ScoringInputError(f"the feature frame has no {ARR_FEATURE!r} column")
    account_ids = features[ID_COLUMN].astype("string").tolist()
    arr = numeric_column(features[ARR_FEATURE], ARR_FEATURE)
    _check_arr(arr, account_ids)
    churn_scores, upsell_scores = _score_matrices(
        [
            ("churn", churn.model, churn.model.prepare(features)),
            ("upsell", upsell.model, upsell.model.prepare(features)),
        ],
        top_k,
        reason_method,
    )
    as_of = (
        features[AS_OF_COLUMN].to_numpy()
        if AS_OF_COLUMN in features.columns
        else np.full(len(features), np.datetime64("NaT", "ns"))
    )
    n_rows = len(features)
    return pd.DataFrame(
        {
            "account_id": pd.array(account_ids, dtype="string"),
            "as_of": as_of,
            "p_churn": churn_scores.probability,
            "p_upsell": upsell_scores.probability,
            "arr": arr,
            "expected_arr_at_risk": churn_scores.probability * arr,
            "reasons": pd.Series(
                _combined_reasons(churn_scores, upsell_scores), index=range(n_rows), dtype=object
            ),
            "churn_model": [churn.name] * n_rows,
            "churn_model_version": [str(churn.version)] * n_rows,
            "upsell_model": [upsell.name] * n_rows,
            "upsell_model_version": [str(upsell.version)] * n_rows,
        },
        index=range(n_rows),
    ).astype(
        {
            "churn_model": "string",
            "churn_model_version": "string",
            "upsell_model": "string",
            "upsell_model_version": "string",
        }
    )


# ------------------------------------------------------------------ records (online service)


def score_records(
    records: Sequence[Mapping[str, Any]],
    churn: Champion,
    upsell: Champion,
    top_k: int = 3,
    reason_method: ReasonMethod = DEFAULT_REASON_METHOD,
) -> list[dict[str, Any]]:
    """Score feature records (dicts with `account_id`, optional `as_of`, and features).

    The same numbers as `score_accounts` on a frame of these rows, without
    pandas: a dict per record with the keys of `SCORE_COLUMNS` (`as_of` is
    passed through as given). A feature the record lacks (or gives as None)
    is missing to the models. Raises `ScoringInputError` naming the record
    whose `account_id` or `arr` is missing or invalid, or a ValueError naming
    a feature that is not a number.
    """
    account_ids: list[str] = []
    arr_values: list[float] = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ScoringInputError(f"record {i} must be a mapping, got {type(record).__name__}")
        account_id = record.get(ID_COLUMN)
        if account_id is None:
            raise ScoringInputError(f"record {i} has no {ID_COLUMN!r}")
        account_ids.append(str(account_id))
        arr_values.append(_record_arr(record, account_ids[-1]))
    arr = np.asarray(arr_values, dtype=np.float64)
    _check_arr(arr, account_ids)
    churn_scores, upsell_scores = _score_matrices(
        [
            ("churn", churn.model, churn.model.prepare(records)),
            ("upsell", upsell.model, upsell.model.prepare(records)),
        ],
        top_k,
        reason_method,
    )
    reasons = _combined_reasons(churn_scores, upsell_scores)
    p_churn = churn_scores.probability.tolist()
    p_upsell = upsell_scores.probability.tolist()
    at_risk = (churn_scores.probability * arr).tolist()
    churn_version, upsell_version = str(churn.version), str(upsell.version)
    return [
        {
            "account_id": account_ids[i],
            "as_of": record.get(AS_OF_COLUMN),
            "p_churn": p_churn[i],
            "p_upsell": p_upsell[i],
            "arr": arr_values[i],
            "expected_arr_at_risk": at_risk[i],
            "reasons": reasons[i],
            "churn_model": churn.name,
            "churn_model_version": churn_version,
            "upsell_model": upsell.name,
            "upsell_model_version": upsell_version,
        }
        for i, record in enumerate(records)
    ]


# ------------------------------------------------------------------ shared checks


def _record_arr(record: Mapping[str, Any], account_id: str) -> float:
    value = record.get(ARR_FEATURE)
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ScoringInputError(
            f"account {account_id!r}: {ARR_FEATURE!r} must be a number, got {value!r}"
        ) from None


def _check_arr(arr: np.ndarray, account_ids: Sequence[str]) -> None:
    """ARR must be a finite number >= 0 for every account (it weighs the churn risk)."""
    bad = ~np.isfinite(arr) | (arr < 0)
    if not bad.any():
        return
    positions = np.flatnonzero(bad)
    examples = ", ".join(f"{account_ids[i]!r} ({arr[i]})" for i in positions[:5])
    raise ScoringInputError(
        f"{len(positions)} account(s) have a missing, infinite or negative "
        f"{ARR_FEATURE!r}: {examples}"
    )


def _combined_reasons(churn: ModelScores, upsell: ModelScores) -> list[list[dict[str, Any]]]:
    return [c + u for c, u in zip(churn.reasons, upsell.reasons, strict=True)]
