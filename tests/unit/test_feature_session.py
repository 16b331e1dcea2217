"""How the local engine runs the definitions: Arrow conversion, scheduling, lining up, errors.

The feature values themselves are checked in test_features.py and
test_feature_reference.py; these tests check the pieces of
`features.build.FeatureSession` that make it fast against plain pandas or
Arrow computations of the same thing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from features.build import (
    FeatureError,
    FeatureSession,
    _arrow_tables,
    _balanced_groups,
    _date_bounds,
    _LineUp,
    build_account_features,
    data_period,
    plan_features,
)
from features.synthetic import GeneratorSettings, generate_portfolio


@pytest.fixture(scope="module")
def saas_tables() -> dict[str, pd.DataFrame]:
    return generate_portfolio(
        GeneratorSettings(n_accounts=80, months=14, seed=5, kind="saas")
    ).tables


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
def test_date_bounds_are_pandas_min_and_max_with_missing_dates(unit: str) -> None:
    rng = np.random.default_rng(1)
    stamps = pd.Timestamp("2021-03-04 05:06:07") + pd.to_timedelta(
        rng.integers(-(10**6), 10**6, 500), unit="s"
    )
    dates = pd.Series(stamps).astype(f"datetime64[{unit}]")
    dates[rng.random(500) < 0.2] = pd.NaT
    first, last = _date_bounds(dates)
    assert (first, last) == (dates.min(), dates.max())
    assert first.unit == unit
    assert _date_bounds(dates.dropna()) == (dates.min(), dates.max())
    assert _date_bounds(pd.Series([pd.NaT] * 3, dtype=f"datetime64[{unit}]")) is None
    zoned = dates.dt.tz_localize("UTC")
    assert _date_bounds(zoned) == (zoned.min(), zoned.max())


def test_the_data_period_is_that_of_pandas(saas_tables: dict[str, pd.DataFrame]) -> None:
    period = data_period(saas_tables)
    usage = saas_tables["usage"]["date"]
    assert period.table_starts["usage"] == usage.min()
    assert period.end == max(
        saas_tables[name][column].max()
        for name, column in (
            ("subscriptions", "start_date"),
            ("usage", "date"),
            ("support_tickets", "created_at"),
            ("opportunities", "created_at"),
            ("nps", "date"),
            ("invoices", "paid_at"),
        )
    )


def test_ids_of_several_frames_are_coded_in_one_lookup() -> None:
    """Chunked ids, ids outside the dictionary and missing ids: as a lookup per column."""
    dictionary = pa.array(["A", "B", "C", "D"], pa.large_string())
    usage_ids = pd.concat(
        [pd.Series(["B", "B", "Z"], dtype="str"), pd.Series(["A", None, "D"], dtype="str")],
        ignore_index=True,
    )
    frames = {
        "usage": pd.DataFrame(
            {
                "account_id": usage_ids,
                "date": pd.to_datetime(["2024-01-01"] * 6).astype("datetime64[ns]"),
                "events": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0],
            }
        ),
        "accounts": pd.DataFrame(
            {
                "account_id": pd.Series(["C", "A"], dtype="str"),
                "parent_account_id": pd.Series([None, "Q"], dtype="str"),
            }
        ),
    }
    tables = _arrow_tables(frames, dictionary)
    for name, frame in frames.items():
        for column in ("account_id", "parent_account_id"):
            if column in frame.columns:
                expected = pc.index_in(pa.array(frame[column]), value_set=dictionary)
                assert tables[name][column].to_pylist() == expected.to_pylist()
    assert tables["usage"]["account_id"].to_pylist() == [1, 1, None, 0, None, 3]
    assert tables["accounts"]["parent_account_id"].to_pylist() == [None, None]
    assert tables["usage"]["events"].null_count == 1


def test_line_up_puts_each_block_row_on_its_account() -> None:
    accounts = pa.chunked_array([pa.array([1, 3, 4], pa.int32())])
    block = pa.table(
        {
            "account_id": pa.array([4, None, 0, 1], pa.int32()),  # null: ids without a code
            "value": [40.0, 99.0, 0.5, 10.0],
            "label": ["d", "null", "z", "b"],
        }
    )
    lined_up = _LineUp(accounts, 5)(block)
    assert lined_up["value"].to_pylist() == [10.0, None, 40.0]
    assert lined_up["label"].to_pylist() == ["b", None, "d"]
    assert _LineUp(accounts, 5)(block.slice(0, 0))["value"].to_pylist() == [None] * 3


def test_balanced_groups_hold_every_table_once(saas_tables: dict[str, pd.DataFrame]) -> None:
    groups = _balanced_groups(saas_tables, 2)
    assert sorted(name for group in groups for name in group) == sorted(saas_tables)
    assert groups[0][0] == max(saas_tables, key=lambda name: len(saas_tables[name]))
    assert _balanced_groups({"nps": saas_tables["nps"]}, 2) == [["nps"]]


def test_one_session_for_several_dates_equals_a_build_per_date(
    saas_tables: dict[str, pd.DataFrame],
) -> None:
    last = data_period(saas_tables).last_day
    days = [last - pd.Timedelta(days=days) for days in (200, 60, 0)]
    with FeatureSession(saas_tables) as session:
        frames = [session.account_features(day) for day in days]
    for day, frame in zip(days, frames, strict=True):
        assert len(frame) > 10
        pd.testing.assert_frame_equal(frame, build_account_features(saas_tables, day))


def test_a_failing_block_is_raised_and_the_session_still_closes(
    saas_tables: dict[str, pd.DataFrame],
) -> None:
    with FeatureSession(saas_tables) as session:
        plan = plan_features(session.columns, session.period.last_day)
        broken = dataclasses.replace(
            plan,
            blocks=(
                *plan.blocks,
                ("block_broken", "SELECT account_id, no_such_column AS x FROM usage GROUP BY 1"),
            ),
        )
        with pytest.raises(duckdb.BinderException, match="no_such_column"):
            session.run_plan(broken)
        # the session is still usable after a failed plan
        assert len(session.run_plan(plan)) > 10


def test_a_session_that_cannot_start_leaves_no_thread_behind() -> None:
    before = threading.active_count()
    empty = {
        "subscriptions": pd.DataFrame(
            {
                "account_id": pd.Series([], dtype="str"),
                "start_date": pd.Series([], dtype="datetime64[ns]"),
                "end_date": pd.Series([], dtype="datetime64[ns]"),
                "arr": pd.Series([], dtype="float64"),
            }
        )
    }
    with pytest.raises(FeatureError, match="no dated rows"):
        FeatureSession(empty)
    assert threading.active_count() == before


def test_active_accounts_without_an_accounts_row_are_named_in_id_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = [f"A{i:02d}" for i in range(15)]
    subscriptions = pd.DataFrame(
        {
            "account_id": pd.Series(ids[::-1], dtype="str"),
            "start_date": pd.to_datetime(["2024-01-01"] * 15).astype("datetime64[ns]"),
            "end_date": pd.Series([pd.NaT] * 15, dtype="datetime64[ns]"),
            "arr": [100.0] * 15,
        }
    )
    accounts = pd.DataFrame(
        {"account_id": pd.Series(["A03", "A07", "B99"], dtype="str"), "segment": "smb"}
    ).astype({"segment": "str"})
    with caplog.at_level(logging.WARNING, logger="features.build"):
        features = build_account_features(
            {"subscriptions": subscriptions, "accounts": accounts}, "2024-01-01"
        )
    assert features["account_id"].tolist() == ids
    missing = [name for name in ids if name not in ("A03", "A07")]
    expected = "13 account(s) active at 2024-01-01 have revenue but no row in accounts"
    assert expected in caplog.text
    assert f"missing: {', '.join(missing[:10])} ..." in caplog.text
