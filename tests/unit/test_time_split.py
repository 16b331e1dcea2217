"""The time split: strict non-overlapping label windows when the history allows it."""

from __future__ import annotations

import pandas as pd
import pytest

from training.pipeline import TrainingError, split_snapshots


def _months(n: int) -> list[pd.Timestamp]:
    return list(pd.date_range("2023-01-01", periods=n, freq="MS"))


def test_strict_split_leaves_gaps_of_one_horizon():
    split = split_snapshots(_months(24), horizon_days=90, calibration_snapshots=3)
    assert split.strict
    assert split.evaluation == pd.Timestamp("2024-12-01")
    # calibration label windows end by the evaluation date
    assert [d.strftime("%Y-%m") for d in split.calibration] == ["2024-07", "2024-08", "2024-09"]
    assert all(d + pd.Timedelta(days=90) <= split.evaluation for d in split.calibration)
    # training label windows end by the first calibration snapshot
    assert split.train[-1] == pd.Timestamp("2024-04-01")
    assert all(d + pd.Timedelta(days=90) <= split.calibration[0] for d in split.train)


def test_short_history_falls_back_to_consecutive_folds():
    split = split_snapshots(_months(4), horizon_days=180, calibration_snapshots=3)
    assert not split.strict
    assert len(split.train) == 1 and len(split.calibration) == 2
    assert "overlap" in split.note


def test_too_few_snapshots_is_a_clear_error():
    with pytest.raises(TrainingError, match="only 2 labelled snapshot"):
        split_snapshots(_months(2), horizon_days=90)
