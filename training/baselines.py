"""Baselines the boosted model must beat, scored on the same evaluation rows.

- `logistic_baseline()`: logistic regression on the same features (median
  imputation with missing indicators, a signed log to tame heavy tails,
  standardisation, one-hot encoding of categorical columns).
- `HealthScoreBaseline`: the rule-based account health score that
  customer-success tools compute: a weighted mean of component scores
  (usage 40%, support 20%, NPS 20%, payment 20%), each component the mean of
  its signals' percentile ranks in the training data, turned the healthy way
  up. The 0-100 score is mapped to a probability by a logistic (Platt) fit on
  the calibration rows, which also learns the direction (low health -> churn).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from training.model import _is_categorical_dtype, numeric_column


class BaselineNotApplicable(ValueError):
    """The baseline cannot be computed on these features (e.g. no health signals)."""


# ------------------------------------------------------------------ logistic regression


def _signed_log(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    return np.sign(values) * np.log1p(np.abs(values))


def _as_object(values: Any) -> np.ndarray:
    frame = pd.DataFrame(values)
    return frame.astype("object").where(frame.notna(), None).to_numpy()


def split_feature_kinds(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric columns, categorical columns) of a feature frame."""
    categorical = [str(c) for c in X.columns if _is_categorical_dtype(X[c])]
    numeric = [str(c) for c in X.columns if str(c) not in categorical]
    return numeric, categorical


def _numeric_frame(X: pd.DataFrame) -> np.ndarray:
    columns = [numeric_column(X[c], str(c)) for c in X.columns]
    return np.column_stack(columns) if columns else np.empty((len(X), 0))


def logistic_baseline(X: pd.DataFrame, C: float = 1.0, seed: int = 0) -> Pipeline:
    """An unfitted logistic-regression pipeline for the columns of `X`."""
    numeric, categorical = split_feature_kinds(X)
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                make_pipeline(
                    FunctionTransformer(_numeric_frame, feature_names_out="one-to-one"),
                    FunctionTransformer(_signed_log, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                make_pipeline(
                    FunctionTransformer(_as_object, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="ignore", min_frequency=20),
                ),
                categorical,
            )
        )
    return Pipeline(
        [
            ("features", ColumnTransformer(transformers, remainder="drop")),
            ("model", LogisticRegression(C=C, max_iter=2000, random_state=seed)),
        ]
    )


# ------------------------------------------------------------------ health score


@dataclass(frozen=True)
class HealthComponent:
    """A component of the health score: signals (feature -> +1 healthy when high, -1 when low)."""

    weight: float
    signals: Mapping[str, int]


@dataclass(frozen=True)
class HealthScoreSpec:
    """Which features feed the health score and how much each component weighs."""

    components: Mapping[str, HealthComponent] = field(
        default_factory=lambda: {
            "usage": HealthComponent(
                0.4,
                {
                    "seat_utilisation_28d": +1,
                    "seat_utilisation_change_12w": +1,
                    "events_change_12w": +1,
                    "days_since_last_activity": -1,
                    # transactional businesses: ordering is the usage signal
                    "order_recency_days": -1,
                    "order_frequency_365d": +1,
                    "order_revenue_trend_180d": +1,
                    "order_overdue_ratio": -1,
                },
            ),
            "support": HealthComponent(
                0.2,
                {
                    "support_tickets_90d": -1,
                    "support_high_priority_share_90d": -1,
                    "support_open_tickets": -1,
                    "support_csat_mean_180d": +1,
                },
            ),
            "nps": HealthComponent(0.2, {"nps_last": +1, "nps_change": +1}),
            "payment": HealthComponent(
                0.2,
                {
                    "invoices_late_share_365d": -1,
                    "invoice_days_late_mean_365d": -1,
                    "overdue_amount": -1,
                },
            ),
        }
    )


class HealthScoreBaseline(ClassifierMixin, BaseEstimator):
    """Rule-based health score (0-100) with a Platt map to a probability.

    `fit(X, y, X_cal, y_cal)`: the percentile references come from `X`; the
    Platt map is fitted on (X_cal, y_cal), or on (X, y) when no calibration
    rows are given. Raises `BaselineNotApplicable` when `X` holds none of the
    signals.
    """

    def __init__(self, spec: HealthScoreSpec | None = None) -> None:
        self.spec = spec

    def _spec(self) -> HealthScoreSpec:
        return self.spec or HealthScoreSpec()

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        X_cal: pd.DataFrame | None = None,
        y_cal: Any = None,
    ) -> HealthScoreBaseline:
        references: dict[str, np.ndarray] = {}
        for component in self._spec().components.values():
            for name in component.signals:
                if name in X.columns:
                    values = numeric_column(X[name], name)
                    values = np.sort(values[np.isfinite(values)])
                    if values.size:
                        references[name] = values
        if not references:
            raise BaselineNotApplicable(
                "no usage, support, NPS or payment features to compute a health score from"
            )
        self.signal_references_ = references
        self.signals_used_ = sorted(references)
        X_map, y_map = (X, y) if X_cal is None else (X_cal, y_cal)
        health = self.health_score(X_map).reshape(-1, 1)
        self.mapping_ = LogisticRegression(C=1e6, max_iter=1000).fit(
            health, np.asarray(y_map, dtype=np.int64)
        )
        self.classes_ = np.array([0, 1])
        return self

    def health_score(self, X: pd.DataFrame) -> np.ndarray:
        """The 0-100 health score per row (50 when no signal is known for the row)."""
        check_is_fitted(self, "signal_references_")
        n = len(X)
        weighted = np.zeros(n)
        weights = np.zeros(n)
        for component in self._spec().components.values():
            ranks = []
            for name, direction in component.signals.items():
                reference = self.signal_references_.get(name)
                if reference is None or name not in X.columns:
                    continue
                values = numeric_column(X[name], name)
                rank = (
                    np.searchsorted(reference, values, side="left")
                    + np.searchsorted(reference, values, side="right")
                ) / (2.0 * reference.size)
                rank = np.where(np.isfinite(values), rank, np.nan)
                ranks.append(rank if direction > 0 else 1.0 - rank)
            if not ranks:
                continue
            stacked = np.vstack(ranks)
            known = np.isfinite(stacked)
            count = known.sum(axis=0)
            component_score = np.where(
                count > 0, np.where(known, stacked, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan
            )
            has = np.isfinite(component_score)
            weighted += np.where(has, component.weight * component_score, 0.0)
            weights += np.where(has, component.weight, 0.0)
        return np.where(weights > 0, 100.0 * weighted / np.maximum(weights, 1e-12), 50.0)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of class 1 (1-D) from the health score."""
        check_is_fitted(self, "mapping_")
        return self.mapping_.predict_proba(self.health_score(X).reshape(-1, 1))[:, 1]


def fit_logistic_baseline(X: pd.DataFrame, y: Any, seed: int = 0) -> Pipeline:
    """The logistic baseline fitted on (X, y)."""
    return logistic_baseline(X, seed=seed).fit(X, np.asarray(y, dtype=np.int64))


def logistic_probabilities(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Probability of class 1 (1-D) from a fitted logistic baseline."""
    return model.predict_proba(X)[:, 1]
