"""Outcome monitoring of an earlier run: serving.outcomes."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from serving.outcomes import elapsed_run, realised_vs_predicted
from serving.runs import RunInfo


def _run(as_of: str, horizon: int | None = None) -> RunInfo:
    return RunInfo(path=Path(as_of), as_of=pd.Timestamp(as_of), horizon_days=horizon)


def test_the_latest_run_whose_horizon_elapsed_within_the_data() -> None:
    runs = [_run("2024-01-31"), _run("2024-03-31"), _run("2024-04-30"), _run("2024-05-31", 30)]
    data_end = pd.Timestamp("2024-06-30")
    # 03-31 + 90 d = 06-29 <= 06-30; 04-30 + 90 d = 07-29 > 06-30; 05-31 + 30 d = 06-30 (its own horizon)
    chosen = elapsed_run(runs, data_end, default_horizon_days=90)
    assert chosen is not None and chosen.path.name == "2024-05-31"
    chosen = elapsed_run(runs, data_end, 90, before=pd.Timestamp("2024-05-31"))
    assert chosen is not None and chosen.path.name == "2024-03-31"
    assert elapsed_run(runs, pd.Timestamp("2024-02-01"), 90) is None


def test_realised_vs_predicted_by_hand() -> None:
    scores = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "gone"],
            "p_churn": [0.9, 0.1, 0.6, 0.2, 0.5],
            "p_upsell": [0.1, 0.8, 0.2, 0.3, 0.5],
            "arr": [100.0, 200.0, 300.0, 400.0, 50.0],
        }
    )
    labels = pd.DataFrame(
        {"account_id": ["a", "b", "c", "d"], "churn": [1, 0, 0, 0], "upsell": [0, 1, 0, 1]}
    )
    result = realised_vs_predicted(scores, labels)

    assert result["accounts_scored"] == 5
    assert result["accounts_labelled"] == 4
    assert result["accounts_without_label"] == 1
    churn = result["churn"]["metrics"]
    assert churn["roc_auc"] == pytest.approx(1.0)  # the churner has the highest p_churn
    assert churn["predicted_arr_at_risk"] == pytest.approx(
        0.9 * 100 + 0.1 * 200 + 0.6 * 300 + 0.2 * 400
    )
    assert churn["realised_churned_arr"] == pytest.approx(100.0)
    # upsell: positives b (0.8), d (0.3); negatives a (0.1), c (0.2): all pairs ordered
    assert result["upsell"]["metrics"]["roc_auc"] == pytest.approx(1.0)
    assert "predicted_arr_at_risk" not in result["upsell"]["metrics"]
    bins = result["churn"]["calibration"]
    assert sum(b["count"] for b in bins) == 4
    assert math.isclose(bins[9]["observed_rate"], 1.0)  # p = 0.9 falls in the last bin
