"""Fuzzing the loader and validation with generated user files (tests/fuzzed_sources.py).

Property: loading a generated `sources.yaml` either stops with SourcesError
naming exactly the planted fatal problems (table, column, rule), or loads
every table with every row accounted for: rows read = rows written, rows
loaded = rows whose required values can be read, each excluded or degraded
value counted in an issue on its column, and every loaded value typed as the
data contract says. Then hand-made regression tests, one per bug fuzzing found.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fuzzed_sources import SourcesPlan, source_plans
from hypothesis import HealthCheck, given, note, settings

from features.contract import CONTRACT
from features.issues import Rule
from features.sources import AccountPartition, SourcesError, load_sources, split_sources
from features.typed_tables import PANDAS_DTYPES
from features.validation import validate_sources

LOADING_RULES = {Rule.MISSING_VALUE, Rule.UNPARSEABLE_VALUE}

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _comparable(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.value
    return value


def _sorted_values(values: list[object]) -> list[object]:
    return sorted((_comparable(v) for v in values), key=lambda v: (type(v).__name__, repr(v)))


def check_loaded_as_planned(plan: SourcesPlan, sources: Path) -> None:
    """The property: a SourcesError naming the planted fatal problems, or every row accounted for."""
    fatal = plan.fatal()
    if fatal:
        with pytest.raises(SourcesError) as raised:
            load_sources(sources)
        found = {(issue.table, issue.column, str(issue.rule)) for issue in raised.value.issues}
        assert found == fatal, (found, [i.message for i in raised.value.issues])
        for issue in raised.value.issues:
            assert issue.severity == "error" and issue.table in issue.message
        report = validate_sources(sources)
        assert not report.ok
        assert {(i.table, i.column, str(i.rule)) for i in report.issues} == fatal
        return

    loaded = load_sources(sources)
    loads = {load.table: load for load in loaded.report.tables}
    for table in plan.tables:
        load = loads[table.table]
        frame = loaded.tables[table.table]
        assert load.rows_read == table.rows_read, (table.table, load)
        assert load.rows_loaded == len(table.loaded_rows()) == len(frame), (table.table, load)
        counts = {
            (issue.column, str(issue.rule), issue.severity): issue.count
            for issue in loaded.report.issues
            if issue.table == table.table and issue.rule in LOADING_RULES
        }
        assert counts == table.issue_counts(), (table.table, counts, table.issue_counts())
        for issue in loaded.report.issues:
            if issue.table == table.table and issue.rule in LOADING_RULES:
                assert f"{table.table}.{issue.column}" in issue.message
                rows = [example["row"] for example in issue.examples]
                assert rows and all(1 <= row <= table.rows_read for row in rows)
        assert list(frame.columns) == CONTRACT[table.table].column_names
        for column in CONTRACT[table.table].columns:
            assert str(frame[column.name].dtype) == str(
                pd.Series(dtype=PANDAS_DTYPES[column.type]).dtype
            ), (table.table, column.name)
            loaded_values = [v for v in frame[column.name].tolist() if not _is_missing(v)]
            assert _sorted_values(loaded_values) == _sorted_values(
                table.expected_values(column.name)
            ), (table.table, column.name)


def _is_missing(value: object) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


@pytest.mark.slow
@FUZZ
@given(plan=source_plans())
def test_loading_accounts_for_every_generated_row(plan: SourcesPlan) -> None:
    note(plan.describe())
    with tempfile.TemporaryDirectory() as folder:
        check_loaded_as_planned(plan, plan.write(Path(folder)))


@pytest.mark.slow
@settings(FUZZ, max_examples=40)
@given(plan=source_plans())
def test_a_split_loads_what_a_filtered_scan_loads(plan: SourcesPlan) -> None:
    """The nightly job's split (features.sources.split_sources) changes nothing a partition
    loads, reports or refuses, whatever the files hold."""
    note(plan.describe())
    with tempfile.TemporaryDirectory() as folder:
        sources = plan.write(Path(folder) / "sources")
        if plan.fatal():
            with pytest.raises(SourcesError) as loading:
                load_sources(sources)
            with pytest.raises(SourcesError) as splitting:
                split_sources(sources, 2, Path(folder) / "split")
            assert str(splitting.value) == str(loading.value)
            return
        split = split_sources(sources, 2, Path(folder) / "split")
        for index in range(2):
            scanned = load_sources(sources, AccountPartition(index, 2))
            loaded = load_sources(sources, AccountPartition(index, 2, split))
            assert loaded.tables.keys() == scanned.tables.keys()
            for table, frame in scanned.tables.items():
                pd.testing.assert_frame_equal(loaded.tables[table], frame)
            assert loaded.report.to_dict() == scanned.report.to_dict()
            assert loaded.fingerprints == scanned.fingerprints


# --------------------------------------------------------------------------- regressions


def write_sources(folder: Path, files: dict[str, bytes | str], tables: dict[str, dict]) -> Path:
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    sources = folder / "sources.yaml"
    sources.write_text(json.dumps({"tables": tables}))
    return sources


def issue_keys(issues) -> set[tuple[str | None, str | None, str]]:
    return {(issue.table, issue.column, str(issue.rule)) for issue in issues}


SUBSCRIPTIONS = "account_id,start_date,arr\nA1,2023-01-01,100\n"


def test_ids_are_trimmed_of_tabs_and_unicode_spaces(tmp_path: Path) -> None:
    """Found by fuzzing: only spaces were trimmed, so 'A1\\t' and '\\u00a0A1' were other accounts
    than 'A1', and an id of only a tab was an account."""
    sources = write_sources(
        tmp_path,
        {
            "subs.csv": "account_id,start_date,arr\nA1,2023-01-01,1\n"
            "A1\t,2023-01-01,2\n\u00a0A1\u3000,2023-01-01,3\n\t,2023-01-01,4\n"
        },
        {"subscriptions": {"path": "subs.csv"}},
    )
    loaded = load_sources(sources)
    assert loaded.tables["subscriptions"]["account_id"].tolist() == ["A1", "A1", "A1"]
    assert loaded.tables["accounts"]["account_id"].tolist() == ["A1"]
    (missing,) = loaded.report.find(Rule.MISSING_VALUE, "subscriptions", "account_id")
    assert missing.count == 1 and missing.examples[0]["row"] == 4


def test_a_json_column_of_strings_and_numbers_reads_strings_without_quotes(
    tmp_path: Path,
) -> None:
    """Found by fuzzing: DuckDB reads such a column as JSON, whose text keeps the quotes, so
    the id "A1" became '"A1"' (a silent new account) and the date "2023-01-05" was unparseable."""
    records = [
        {"account_id": "A1", "start_date": "2023-01-05", "arr": "100"},
        {"account_id": 7, "start_date": 20230106, "arr": 50},
    ]
    sources = write_sources(
        tmp_path, {"subs.json": json.dumps(records)}, {"subscriptions": {"path": "subs.json"}}
    )
    loaded = load_sources(sources)
    assert loaded.report.ok, loaded.report.issues
    frame = loaded.tables["subscriptions"]
    assert frame["account_id"].tolist() == ["A1", "7"]
    assert frame["start_date"].tolist() == [pd.Timestamp("2023-01-05"), pd.Timestamp("2023-01-06")]
    assert frame["arr"].tolist() == [100.0, 50.0]


def test_a_list_or_a_record_is_not_an_id(tmp_path: Path) -> None:
    """Found by fuzzing: a Parquet list column or a JSON array/object became the text of the
    list ('[a]', '{"id": 1}') and was loaded as an account id."""
    table = pa.table(
        {
            "account_id": pa.array([["a"], ["b", "c"], None], pa.list_(pa.string())),
            "start_date": ["2023-01-01"] * 3,
            "arr": [1.0, 2.0, 3.0],
        }
    )
    pq.write_table(table, tmp_path / "subs.parquet")
    records = [
        {"account_id": "A1", "date": "2023-01-01", "amount": 1},
        {"account_id": {"id": 1}, "date": "2023-01-01", "amount": 2},
        {"account_id": [1, 2], "date": "2023-01-01", "amount": 3},
    ]
    (tmp_path / "orders.json").write_text(json.dumps(records))
    sources = write_sources(
        tmp_path,
        {},
        {"subscriptions": {"path": "subs.parquet"}, "orders": {"path": "orders.json"}},
    )
    loaded = load_sources(sources)
    (subs,) = loaded.report.find(Rule.UNPARSEABLE_VALUE, "subscriptions", "account_id")
    assert subs.count == 2 and subs.severity == "error"
    assert "subscriptions.account_id" in subs.message and "not a list" in subs.message
    (orders,) = loaded.report.find(Rule.UNPARSEABLE_VALUE, "orders", "account_id")
    assert orders.count == 2 and [e["row"] for e in orders.examples] == [2, 3]
    assert loaded.tables["orders"]["account_id"].tolist() == ["A1"]
    assert len(loaded.tables["subscriptions"]) == 0


@pytest.mark.parametrize("content", [b"", b"\n", b"[]", b"[]\n"])
def test_an_empty_csv_or_json_file_is_an_empty_table(tmp_path: Path, content: bytes) -> None:
    """Found by fuzzing: a 0-byte CSV was 'missing required columns (the source has: column0)'
    and an empty JSON file '... (the source has: json)'."""
    suffix = "json" if content.startswith(b"[") else "csv"
    for name in ("usage", "subscriptions"):
        (tmp_path / f"{name}.{suffix}").write_bytes(content)
    (tmp_path / "subs.csv").write_text(SUBSCRIPTIONS)
    usable = write_sources(
        tmp_path,
        {},
        {"subscriptions": {"path": "subs.csv"}, "usage": {"path": f"usage.{suffix}"}},
    )
    loaded = load_sources(usable)
    assert loaded.report.ok and len(loaded.tables["usage"]) == 0
    assert list(loaded.tables["usage"].columns) == CONTRACT["usage"].column_names
    assert issue_keys(loaded.report.issues) == {("usage", None, "empty_table")}

    empty_revenue = write_sources(
        tmp_path, {}, {"subscriptions": {"path": f"subscriptions.{suffix}"}}
    )
    report = validate_sources(empty_revenue)
    assert ("subscriptions", None, "empty_table") in issue_keys(report.errors)
    assert "subscriptions has no usable rows" in [issue.message for issue in report.errors]


def test_an_empty_parquet_file_is_a_read_error(tmp_path: Path) -> None:
    sources = write_sources(
        tmp_path, {"subs.parquet": b""}, {"subscriptions": {"path": "subs.parquet"}}
    )
    with pytest.raises(SourcesError) as raised:
        load_sources(sources)
    assert issue_keys(raised.value.issues) == {("subscriptions", None, "read_error")}
    assert "subs.parquet" in str(raised.value)


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("account_id,start_date,arr,arr", "arr"),
        ("account_id,start_date,arr,ARR", "arr"),
        ("account_id,account_id,start_date,arr", "account_id"),
    ],
)
def test_a_duplicated_header_is_an_error_naming_the_column(
    tmp_path: Path, header: str, column: str
) -> None:
    """Found by fuzzing: DuckDB renames the copy (`arr_1`), so the first `arr` was read and the
    second silently ignored, whichever the user meant."""
    n_fields = header.count(",") + 1
    row = ",".join(["A1", "2023-01-01", "5", "7"][:n_fields])
    if header.startswith("account_id,account_id"):
        row = "A1,A2,2023-01-01,5"
    sources = write_sources(
        tmp_path, {"subs.csv": f"{header}\n{row}\n"}, {"subscriptions": {"path": "subs.csv"}}
    )
    with pytest.raises(SourcesError) as raised:
        load_sources(sources)
    assert issue_keys(raised.value.issues) == {("subscriptions", column, "duplicate_column")}
    assert f"names the column {column!r} 2 times" in str(raised.value).replace("'ARR'", "'arr'")


def test_repeated_headers_the_table_does_not_read_and_real_suffixed_names_load(
    tmp_path: Path,
) -> None:
    sources = write_sources(
        tmp_path,
        {"subs.csv": "account_id,start_date,arr,arr_1,notes,notes\nA1,2023-01-01,5,7,x,y\n"},
        {"subscriptions": {"path": "subs.csv"}},
    )
    loaded = load_sources(sources)
    assert loaded.report.ok
    assert loaded.tables["subscriptions"]["arr"].tolist() == [5.0]


def test_a_csv_read_without_a_header_row_says_so(tmp_path: Path) -> None:
    """Found while fuzzing: rows of uneven length make DuckDB's sniffer drop the header, and
    the errors only said 'no column account_id (the source has: column0, column1, ...)'."""
    sources = write_sources(
        tmp_path,
        {"subs.csv": "account_id,start_date,arr\nA1,2023-01-01\nA2,2023-01-01,1,2,3\n"},
        {"subscriptions": {"path": "subs.csv"}},
    )
    with pytest.raises(SourcesError) as raised:
        load_sources(sources)
    first = raised.value.issues[0]
    assert (first.table, first.rule) == ("subscriptions", "read_error")
    assert "without a header row" in first.message
    assert "as many fields as the header" in first.message


def test_nan_in_a_parquet_float_column_is_missing(tmp_path: Path) -> None:
    """Found by fuzzing: DuckDB 2.0's isnan() is wrong for some NaNs read straight from
    Parquet, so NaN ids failed the whole table (a cast error) and NaN numbers were counted as
    unparseable instead of missing."""
    nan = math.nan
    table = pa.table(
        {
            "account_id": pa.array([1.0, nan, nan, nan, 2.0]),
            "date": ["2023-01-01"] * 5,
            "amount": pa.array([1.0, 5.0, nan, nan, 2.0]),
            "margin": pa.array([0.5, nan, nan, nan, 0.25]),
        }
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    loaded = load_sources(write_sources(tmp_path, {}, {"orders": {"path": "orders.parquet"}}))
    assert loaded.tables["orders"]["account_id"].tolist() == ["1", "2"]
    counts = {(i.column, str(i.rule)): i.count for i in loaded.report.issues}
    assert counts == {("account_id", "missing_value"): 3, ("amount", "missing_value"): 2}


def test_the_priority_matrix_draws_arr_near_the_float_maximum() -> None:
    """Found by fuzzing `portfolio score`: an ARR of 1.8e308 (a valid number) made the
    report's log-scale ticks compute 10.0**309, and the job failed with
    'OverflowError: (34, 'Numerical result out of range')'."""
    from serving.charts import priority_matrix

    chart = priority_matrix(
        [0.2, 0.7], [1.7976931348623157e308, 120.0], [1.0, 1.0], ["a", "b"], ["X", "Y"]
    )
    assert "<svg" in chart and "<circle" in chart
