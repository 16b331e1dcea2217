"""Outcome monitoring: what an earlier run predicted against what then happened.

A run scored at date t with horizon h can be judged once the data reaches
t + h. `elapsed_run` picks, among the completed runs beside the one being
written, the latest whose horizon has elapsed within the data; the nightly
job then builds the labels at t (the same `build_labels` as training) and
`realised_vs_predicted` compares them with that run's scores: ROC-AUC,
calibration (ECE and the reliability bins), and for churn the predicted ARR
at risk against the ARR that actually churned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from serving.runs import RunInfo
from training.metrics import calibration_bins, evaluate_binary

# (label column, score column, weighted by ARR)
TARGETS: tuple[tuple[str, str, bool], ...] = (
    ("churn", "p_churn", True),
    ("upsell", "p_upsell", False),
)


def elapsed_run(
    runs: Sequence[RunInfo],
    data_end: pd.Timestamp,
    default_horizon_days: int,
    before: pd.Timestamp | None = None,
) -> RunInfo | None:
    """The latest run whose as-of + horizon is at or before `data_end` (and before `before`)."""
    candidates = [
        run
        for run in runs
        if run.as_of + pd.Timedelta(days=run.horizon_days or default_horizon_days) <= data_end
        and (before is None or run.as_of < before)
    ]
    return max(candidates, key=lambda run: (run.as_of, run.path.name), default=None)


def realised_vs_predicted(
    scores: pd.DataFrame, labels: pd.DataFrame, n_bins: int = 10
) -> dict[str, Any]:
    """Compare an earlier run's scores with the labels realised over its horizon.

    `scores`: account_id, p_churn, p_upsell, arr (that run's scores.parquet).
    `labels`: account_id and a 0/1 column per target (churn, upsell), for the
    accounts active at that run's as-of date. Accounts scored but without a
    label (no longer in the data) are counted, not silently dropped.
    """
    merged = scores.merge(labels, on="account_id", how="left", validate="one_to_one")
    result: dict[str, Any] = {
        "accounts_scored": len(scores),
        "accounts_labelled": 0,
        "accounts_without_label": 0,
    }
    for label, score, weighted in TARGETS:
        if label not in merged.columns or score not in merged.columns:
            continue
        known = merged[merged[label].notna() & merged[score].notna()]
        result["accounts_labelled"] = max(result["accounts_labelled"], len(known))
        result["accounts_without_label"] = max(
            result["accounts_without_label"], len(merged) - len(known)
        )
        if known.empty:
            continue
        y = known[label].astype("float64").to_numpy()
        p = known[score].astype("float64").to_numpy()
        arr = known["arr"].astype("float64").to_numpy() if weighted else None
        result[label] = {
            "metrics": evaluate_binary(y, p, arr),
            "calibration": calibration_bins(y, p, n_bins),
        }
    return result
