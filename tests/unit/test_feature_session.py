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
from itertools import pairwise

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from features import build, id_runs
from features.build import (
    FeatureError,
    FeatureSession,
    _active_rows,
    _arrow_column,
    _arrow_tables,
    _balanced_groups,
    _date_bounds,
    _has_missing,
    _LineUp,
    build_account_features,
    data_period,
    plan_features,
)
from features.definitions import AggregateBlock, RowWindow
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


@pytest.mark.parametrize("run_sample_rows", [65_536, 2])
def test_ids_of_several_frames_are_coded_in_one_lookup(
    run_sample_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunked ids, ids outside the dictionary and missing ids: as a lookup per column.

    Also with the ids looked up once per run (a sample of 2 rows decides).
    """
    monkeypatch.setattr(id_runs, "RUN_SAMPLE_ROWS", run_sample_rows)
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
    tables = _arrow_tables(frames, lambda: dictionary)
    for name, frame in frames.items():
        for column in ("account_id", "parent_account_id"):
            if column in frame.columns:
                expected = pc.index_in(pa.array(frame[column]), value_set=dictionary)
                assert tables[name][column].to_pylist() == expected.to_pylist()
    assert tables["usage"]["account_id"].to_pylist() == [1, 1, None, 0, None, 3]
    assert tables["accounts"]["parent_account_id"].to_pylist() == [None, None]
    assert tables["usage"]["events"].null_count == 1


@pytest.mark.parametrize("seed", range(5))
def test_ids_in_runs_are_coded_as_a_lookup_per_row(seed: int) -> None:
    """Runs of ids (missing ones and ids outside the dictionary among them), in chunks."""
    rng = np.random.default_rng(seed)
    dictionary = pa.array([f"ACC-{i:03d}" for i in range(0, 200, 2)], pa.large_string())
    names = [f"ACC-{i:03d}" for i in range(200)] + [None]  # odd numbers are not in it
    runs = rng.choice(len(names), size=3_000)
    ids = [names[i] for i in runs for _ in range(int(rng.integers(1, 60)))]
    cut = len(ids) // 3
    chunked = pa.chunked_array(
        [pa.array(ids[:cut], pa.large_string()), pa.array(ids[cut:], pa.large_string())]
    )
    assert id_runs.run_starts(chunked) is not None
    (codes,) = build._id_codes([chunked], lambda: dictionary)
    assert codes.type == pa.int32()
    assert codes.to_pylist() == pc.index_in(chunked, value_set=dictionary).to_pylist()


def test_rows_of_a_chunked_column_are_taken_chunk_by_chunk() -> None:
    rng = np.random.default_rng(1)
    values = [f"ACC-{i}" if i % 7 else None for i in range(1_000)]
    cuts = [0, 0, 10, 11, 400, 400, 999, 1_000]  # empty chunks, a one-row chunk
    chunked = pa.chunked_array(
        [pa.array(values[a:b], pa.large_string()) for a, b in pairwise(cuts)],
        pa.large_string(),
    )
    rows = np.sort(rng.choice(1_000, size=300, replace=False))
    assert id_runs.take_rows(chunked, rows).to_pylist() == [values[i] for i in rows]
    assert id_runs.take_rows(chunked, rows[:0]).to_pylist() == []


def test_ids_not_in_runs_are_looked_up_row_by_row() -> None:
    rng = np.random.default_rng(0)
    ids = pa.array([f"ACC-{i:05d}" for i in rng.integers(0, 50_000, 100_000)], pa.large_string())
    assert id_runs.run_starts(ids) is None
    assert id_runs.run_starts(ids.slice(0, 1_000)) is None  # shorter than the sample
    # In runs for the first rows only.
    first = pa.array(np.repeat([f"ACC-{i:05d}" for i in range(2_000)], 50), pa.large_string())
    assert id_runs.run_starts(first) is not None
    assert id_runs.run_starts(pa.chunked_array([first, ids])) is None


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([1.5, np.nan, -np.inf, 2.0, np.nan]),
        pd.Series([np.nan, np.nan]),
        pd.Series([0.5, np.inf, 3.0]),
        pd.Series([], dtype="float64"),
        pd.Series(pd.to_datetime(["2024-01-01", None, "1970-01-01"])).astype("datetime64[ns]"),
        pd.Series(pd.to_datetime(["2024-01-01 10:00", "2023-05-06 00:00"])).astype(
            "datetime64[us]"
        ),
        pd.Series([pd.NaT, pd.NaT], dtype="datetime64[s]"),
        pd.Series(["a", None], dtype="str"),
    ],
)
def test_columns_reach_arrow_as_arrow_converts_them(values: pd.Series) -> None:
    """Floats and dates without a copy, missing ones (NaN, NaT) as nulls: as Arrow's conversion."""
    expected = pa.array(values, from_pandas=True)
    converted = _arrow_column(values)
    assert converted.type == expected.type
    assert converted.null_count == expected.null_count
    assert converted.to_pylist() == expected.to_pylist()
    assert _has_missing(values) == bool(values.isna().any())


def test_a_block_over_a_window_gets_the_rows_its_query_keeps() -> None:
    """The rows in the window's days up to the as-of day; none before or after."""
    dates = pd.to_datetime(
        [
            "2024-01-14 23:59:00",  # the day before the window
            "2024-01-15 00:00:00",  # its first day: 168 days before the day after the as-of day
            "2024-03-01 00:00:00",
            "2024-06-30 23:59:00",  # the as-of day
            "2024-07-01 00:00:00",  # after it
        ]
    ).astype("datetime64[ns]")
    ids = pd.Series(["A"] * len(dates), dtype="str")
    subscriptions = pd.DataFrame(
        {
            "account_id": pd.Series(["A"], dtype="str"),
            "start_date": pd.to_datetime(["2020-01-01"]).astype("datetime64[ns]"),
            "arr": [1.0],
        }
    )
    usage = pd.DataFrame({"account_id": ids, "date": dates, "events": np.arange(5.0)})
    long_ago = usage.iloc[[0] * 20].assign(date=pd.Timestamp("2021-01-01"))
    usage = pd.concat([usage, long_ago], ignore_index=True)
    with FeatureSession({"subscriptions": subscriptions, "usage": usage}) as session:
        plan = plan_features(session.columns, "2024-06-30")
        ((table, window),) = [value for value in plan.windows.values() if value[0] == "usage"]
        assert (table, window.days) == ("usage", 168)
        rows = session._window_rows(table, window, plan.as_of)
        assert rows["events"].to_pylist() == [1.0, 2.0, 3.0]
        # the features are those of the query over all the rows
        whole = session.run_plan(dataclasses.replace(plan, windows={}))
        pd.testing.assert_frame_equal(session.run_plan(plan), whole)


def test_a_block_must_filter_on_the_window_it_declares() -> None:
    """A window its rows do not filter on would hand the block too few rows: refused."""
    window = RowWindow("date", 168)
    AggregateBlock("recent", f"SELECT * FROM usage WHERE {window.sql}", {"n": "count(*)"}, window)
    with pytest.raises(ValueError, match="'recent': its rows do not filter on its window"):
        AggregateBlock("recent", "SELECT * FROM usage", {"n": "count(*)"}, window)


def test_windows_change_no_feature(saas_tables: dict[str, pd.DataFrame]) -> None:
    with FeatureSession(saas_tables) as session:
        for day in (session.period.last_day, session.period.last_day - pd.Timedelta(days=200)):
            plan = plan_features(session.columns, day)
            tables = {table for table, _ in plan.windows.values()}
            assert {"usage", "support_tickets", "invoices"} <= tables
            table, window = plan.windows["block_usage_windows"]
            assert session._window_rows(table, window, day).num_rows < len(saas_tables["usage"])
            whole = session.run_plan(dataclasses.replace(plan, windows={}))
            pd.testing.assert_frame_equal(session.run_plan(plan), whole, check_exact=True)


def test_active_rows_are_those_of_the_marked_accounts() -> None:
    active = np.array([False, True, False, True, False])  # the last slot: rows without a code
    table = pa.table(
        {
            "account_id": pa.chunked_array([[0, 1, None], [3, 3, 2]], pa.int32()),
            "value": pa.chunked_array([[0.0, 1.0, 9.0], [3.0, 3.5, 2.0]]),
        }
    )
    rows = _active_rows(table, active)
    assert rows["account_id"].to_pylist() == [1, 3, 3]
    assert rows["value"].to_pylist() == [1.0, 3.0, 3.5]
    # nearly every row an active account's: the table as it is, no copy
    assert _active_rows(table, np.array([True, True, False, True, True])) is table


def test_narrowing_to_the_active_accounts_changes_no_feature(
    saas_tables: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    narrowed: list[tuple[int, int]] = []

    def spy(table: pa.Table, active: np.ndarray) -> pa.Table:
        rows = _active_rows(table, active)
        narrowed.append((table.num_rows, rows.num_rows))
        return rows

    monkeypatch.setattr(build, "_active_rows", spy)
    monkeypatch.setattr(build, "NARROW_SHARE", 0.0)  # narrow whenever a row is another account's
    with FeatureSession(saas_tables) as session:
        assert "usage" not in session._narrowed_tables("SELECT * FROM usage")
        for day in (session.period.last_day, session.period.last_day - pd.Timedelta(days=300)):
            plan = plan_features(session.columns, day)
            narrowed.clear()
            features = session.run_plan(plan)
            assert any(kept < rows for rows, kept in narrowed)  # some blocks got fewer rows
            with monkeypatch.context() as nothing_narrowed:
                nothing_narrowed.setattr(build, "NARROW_ROWS_PER_ACCOUNT", 0)
                whole = session.run_plan(plan)
            pd.testing.assert_frame_equal(features, whole, check_exact=True)


def test_tables_read_over_a_window_have_their_ids_coded_for_the_window_alone(
    saas_tables: dict[str, pd.DataFrame],
) -> None:
    with FeatureSession(saas_tables) as session:
        assert {"support_tickets", "invoices"} <= session._windowed_only
        assert not {"subscriptions", "accounts", "usage"} & session._windowed_only
        text = session._arrow_jobs["support_tickets"].result()["support_tickets"]
        assert pa.types.is_large_string(text["account_id"].type)  # not coded when converted
        plan = plan_features(session.columns, session.period.last_day)
        features = session.run_plan(plan)
        table, window = plan.windows["block_support_tickets"]
        rows = session._window_rows(table, window, plan.as_of)
        assert 0 < rows.num_rows < text.num_rows / 2
        assert "support_tickets" not in session._whole_tables  # never coded whole
        created = saas_tables["support_tickets"]["created_at"]
        cutoff = plan.as_of + pd.Timedelta(days=1)
        inside = (created >= cutoff - pd.Timedelta(days=window.days)) & (created < cutoff)
        window_ids = pa.array(saas_tables["support_tickets"]["account_id"][inside])
        expected = pc.index_in(window_ids, value_set=session.account_ids)
        assert rows["account_id"].to_pylist() == expected.to_pylist()
        # Read whole (a query over the table, or a plan without windows): coded once, the same
        # features.
        (coded,) = session.query("SELECT count(account_id) AS n FROM support_tickets")["n"]
        assert coded == pc.sum(pc.is_in(text["account_id"], session.account_ids)).as_py()
        whole = session.run_plan(dataclasses.replace(plan, windows={}))
        pd.testing.assert_frame_equal(features, whole, check_exact=True)


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


def test_a_failing_revenue_block_stops_the_blocks_waiting_for_the_active_accounts(
    saas_tables: dict[str, pd.DataFrame],
) -> None:
    with FeatureSession(saas_tables) as session:
        plan = plan_features(session.columns, session.period.last_day)
        (name, _), *others = plan.blocks
        assert any("spine" in sql for _, sql in others)
        broken = dataclasses.replace(
            plan,
            blocks=((name, "SELECT account_id, no_such_column AS arr FROM subscriptions"), *others),
        )
        with pytest.raises(duckdb.BinderException, match="no_such_column"):
            session.run_plan(broken)
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
