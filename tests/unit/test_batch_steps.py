"""The pure steps of the nightly job: serving.batch on hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import DataPeriod
from serving.batch import JobInputError, chunk_bounds, resolve_as_of, split_scorable

AS_OF = pd.Timestamp("2024-06-30")


def _features() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pd.array(["A1", "A2", "A3", "A4", "A4", "A5"], dtype="str"),
            "as_of": [AS_OF] * 6,
            "arr": [100.0, np.inf, 300.0, 50.0, 60.0, 80.0],
            "usage_trend": [0.1, 0.2, -np.inf, 0.0, 0.0, np.nan],
            "plan": pd.array(["pro", "pro", None, "basic", "basic", "pro"], dtype="str"),
        }
    )


def test_split_scorable_names_every_rejected_account_once() -> None:
    scorable, rejected = split_scorable(_features(), ["arr", "usage_trend", "plan"])

    assert list(scorable["account_id"]) == ["A1", "A5"]  # a missing value is scorable
    assert list(rejected["account_id"]) == ["A2", "A3", "A4", "A4"]
    assert list(rejected["reason"]) == [
        "invalid_arr",
        "infinite_feature_value",
        "duplicate_account_id",
        "duplicate_account_id",
    ]
    assert rejected.iloc[0]["detail"].startswith("arr = inf")
    assert rejected.iloc[1]["detail"] == "infinite value in usage_trend"
    assert len(scorable) + len(rejected) == len(_features())
    assert list(rejected.columns) == ["account_id", "as_of", "reason", "detail"]


def test_split_scorable_with_nothing_wrong_rejects_nothing() -> None:
    frame = _features().iloc[[0, 5]]
    scorable, rejected = split_scorable(frame, ["arr", "usage_trend"])
    assert len(scorable) == 2 and rejected.empty


def test_as_of_defaults_to_the_last_date_and_is_checked() -> None:
    period = DataPeriod(pd.Timestamp("2022-01-03"), pd.Timestamp("2024-06-30 10:00"))
    assert resolve_as_of(period, None) == pd.Timestamp("2024-06-30")
    assert resolve_as_of(period, "2024-01-31") == pd.Timestamp("2024-01-31")
    with pytest.raises(JobInputError, match="after the last date in the data"):
        resolve_as_of(period, "2024-07-01")
    with pytest.raises(JobInputError, match="before all data"):
        resolve_as_of(period, "2021-12-31")
    with pytest.raises(JobInputError, match="not a date"):
        resolve_as_of(period, "yesterday")


def test_chunk_bounds_cover_every_row_once() -> None:
    assert chunk_bounds(0, 10) == []
    assert chunk_bounds(25, 10) == [(0, 10), (10, 20), (20, 25)]
