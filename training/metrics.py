"""Evaluation metrics for calibrated binary scores.

`evaluate_binary` returns one flat dict of floats (names usable as MLflow
metric keys). Discrimination: ROC-AUC, PR-AUC (average precision), lift in
the top decile. Calibration: Brier score, log loss, expected calibration error
over 10 equal-width probability bins. For churn, with the ARR of each
account: the predicted ARR at risk (sum of p x ARR), the ARR that actually
churned and the signed relative error between them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

LOG_LOSS_CLIP = 1e-15


def _as_arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in length: {y.size} vs {p.size}")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be in [0, 1] with no missing values")
    return y, p


def calibration_bins(y: Any, p: Any, n_bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins over [0, 1]: count, mean predicted and observed rate per bin.

    Bin i holds p in [i/n, (i+1)/n); p = 1 falls in the last bin. Empty bins
    are returned with count 0 and NaN means.
    """
    y, p = _as_arrays(y, p)
    index = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sum_p = np.bincount(index, weights=p, minlength=n_bins)
    sum_y = np.bincount(index, weights=y, minlength=n_bins)
    bins = []
    for i in range(n_bins):
        c = int(counts[i])
        bins.append(
            {
                "lower": i / n_bins,
                "upper": (i + 1) / n_bins,
                "count": c,
                "mean_predicted": float(sum_p[i] / c) if c else math.nan,
                "observed_rate": float(sum_y[i] / c) if c else math.nan,
            }
        )
    return bins


def expected_calibration_error(y: Any, p: Any, n_bins: int = 10) -> float:
    """Sum over equal-width bins of (bin share) x |mean predicted - observed rate|."""
    y, p = _as_arrays(y, p)
    total = 0.0
    for b in calibration_bins(y, p, n_bins):
        if b["count"]:
            total += b["count"] / y.size * abs(b["mean_predicted"] - b["observed_rate"])
    return float(total)


def lift_at(y: Any, p: Any, fraction: float = 0.1) -> float:
    """Positive rate among the top `fraction` of rows by p, over the overall positive rate.

    The top group has ceil(fraction x n) rows; ties in p are broken by row order.
    NaN when there is no positive at all.
    """
    y, p = _as_arrays(y, p)
    base = y.mean()
    if base == 0:
        return math.nan
    k = max(1, math.ceil(fraction * y.size - 1e-9))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / base)


def cumulative_gain(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """Share of rows contacted (x) and share of positives captured (y), highest p first."""
    y, p = _as_arrays(y, p)
    order = np.argsort(-p, kind="stable")
    captured = np.cumsum(y[order])
    positives = captured[-1] if captured.size else 0.0
    x = np.arange(1, y.size + 1) / y.size
    gain = captured / positives if positives else np.zeros_like(captured)
    return np.concatenate([[0.0], x]), np.concatenate([[0.0], gain])


def evaluate_binary(y: Any, p: Any, arr: Any = None) -> dict[str, float]:
    """Every evaluation metric for labels `y` and calibrated probabilities `p`.

    With `arr` (each row's ARR at the snapshot) the churn money metrics are
    added: predicted_arr_at_risk = sum(p x arr), realised_churned_arr =
    sum(y x arr) and arr_at_risk_rel_error = predicted / realised - 1 (NaN
    when nothing churned). ROC-AUC and PR-AUC are NaN when only one class
    is present.
    """
    y, p = _as_arrays(y, p)
    both_classes = 0 < y.sum() < y.size
    clipped = np.clip(p, LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
    metrics = {
        "n_rows": float(y.size),
        "positive_rate": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else math.nan,
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": lift_at(y, p, 0.1),
    }
    if arr is not None:
        arr = np.asarray(arr, dtype=np.float64).ravel()
        if arr.shape != y.shape:
            raise ValueError(f"arr has {arr.size} values for {y.size} rows")
        arr = np.nan_to_num(arr, nan=0.0)
        predicted = float(np.sum(p * arr))
        realised = float(np.sum(y * arr))
        metrics["predicted_arr_at_risk"] = predicted
        metrics["realised_churned_arr"] = realised
        metrics["arr_at_risk_rel_error"] = predicted / realised - 1 if realised > 0 else math.nan
    return metrics
