"""Loading part by part of the accounts, and merging the parts (serving.partitions)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features.build import DataPeriod, build_account_features
from features.issues import Issue, Rule, TableLoad, ValidationReport
from features.sources import (
    AccountPartition,
    SourcesError,
    load_sources,
    split_sources,
)
from features.synthetic import GeneratorSettings, generate_and_write_shards
from serving.partitions import (
    concat_tables,
    estimated_source_rows,
    merge_periods,
    merge_reports,
    merge_unknown_columns,
    partition_count,
)


def _sources(tmp_path: Path, accounts: pd.DataFrame, subscriptions: list[pd.DataFrame]) -> Path:
    accounts.to_parquet(tmp_path / "accounts.parquet", index=False)
    for index, frame in enumerate(subscriptions):
        frame.to_parquet(tmp_path / f"subs-{index}.parquet", index=False)
    path = tmp_path / "sources.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: parts
            tables:
              accounts: {path: accounts.parquet}
              subscriptions: {path: "subs-*.parquet"}
            """
        )
    )
    return path


ACCOUNTS = pd.DataFrame(
    {
        "account_id": [f"A{i}" for i in range(12)],
        "parent_account_id": [None, "A0", "A0", None, "A3", "Z9", *[None] * 6],
    }
)
SUBSCRIPTIONS = pd.DataFrame(
    {
        "account_id": [f"A{i % 12}" for i in range(30)] + [None, "A99", "A98", "A97", "A96"],
        "start_date": ["2023-01-01"] * 35,
        "end_date": [None] * 35,
        "arr": [float(100 + i) for i in range(30)] + [5.0, -1.0, 1.0, 2.0, 3.0],
    }
)


def test_partitions_split_every_account_table_and_add_up(tmp_path: Path) -> None:
    sources = _sources(tmp_path, ACCOUNTS, [SUBSCRIPTIONS.iloc[:20], SUBSCRIPTIONS.iloc[20:]])
    whole = load_sources(sources)
    parts = [load_sources(sources, AccountPartition(k, 3)) for k in range(3)]

    for table in ("accounts", "subscriptions"):
        ids = [set(part.tables[table]["account_id"].dropna()) for part in parts]
        assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
        # The same rows: DuckDB may read the files of a table in either order when it reads
        # them whole with two threads (the rows of one file stay in order).
        merged = concat_tables([part.tables for part in parts])[table]
        pd.testing.assert_frame_equal(_sorted_rows(merged), _sorted_rows(whole.tables[table]))
    # a partition puts its rows back in source order: an account's subscriptions across the
    # two files come in the order of the files
    for part in parts:
        subscriptions = part.tables["subscriptions"].dropna(subset=["account_id"])
        for _, rows in subscriptions.groupby("account_id"):
            assert rows["arr"].is_monotonic_increasing  # arr grows with the source row
    assert set(parts[0].fingerprints) == set(whole.fingerprints)
    assert parts[1].fingerprints == {}

    report = merge_reports(
        [part.report for part in parts],
        concat_tables([part.tables for part in parts]),
        partitioned=True,
    )
    assert [load.to_dict() for load in report.tables] == [
        load.to_dict() for load in whole.report.tables
    ]
    by_rule = {(i.table, i.rule): i for i in report.issues}
    expected_rules = {(i.table, i.rule): i for i in whole.report.issues}
    assert by_rule.keys() == expected_rules.keys()
    for key, issue in expected_rules.items():
        assert by_rule[key].count == issue.count, key
        assert by_rule[key].severity == issue.severity
    # a parent is not an unknown parent; Z9 is
    unknown_parent = by_rule[("accounts", Rule.UNKNOWN_PARENT_ACCOUNT)]
    assert unknown_parent.count == 1 and unknown_parent.examples[0]["account_id"] == "A5"
    orphans = by_rule[("subscriptions", Rule.ORPHAN_ACCOUNT_ID)]
    assert orphans.message.startswith("4 row(s) of subscriptions (4 account id(s))")
    assert len({part.tables["subscriptions"]["account_id"].iloc[-1] for part in parts}) > 1
    # the row number of an excluded row counts across the files, as in one pass
    missing = by_rule[("subscriptions", Rule.MISSING_VALUE)]
    assert missing.examples == expected_rules[("subscriptions", Rule.MISSING_VALUE)].examples


def _sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), kind="stable", ignore_index=True)


def _mixed_sources(tmp_path: Path) -> Path:
    """Parquet over two files, a CSV with unparseable values, a `sql` table, some bad rows."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    ACCOUNTS.to_parquet(tmp_path / "accounts.parquet", index=False)
    SUBSCRIPTIONS.iloc[:20].to_parquet(tmp_path / "subs-0.parquet", index=False)
    SUBSCRIPTIONS.iloc[20:].to_parquet(tmp_path / "subs-1.parquet", index=False)
    usage = pd.DataFrame(
        {
            "account_id": [f" A{i % 14} " for i in range(40)] + ["", "A3"],
            "date": ["2023-02-01"] * 39 + ["not a date", "2023-03-01", "2023-13-45"],
            "active_users": [str(i) for i in range(40)] + ["x", "5"],
        }
    )
    usage.to_csv(tmp_path / "usage.csv", index=False)
    nps = pd.DataFrame({"Customer": ["A1", "A2", "A7", None, "A11"], "Score": [9, 3, 11, 5, 7]})
    nps.to_csv(tmp_path / "nps_raw.csv", index=False)
    path = tmp_path / "sources.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: mixed
            tables:
              accounts: {path: accounts.parquet}
              subscriptions: {path: "subs-*.parquet"}
              usage: {path: usage.csv}
              nps:
                sql: >
                  SELECT Customer AS account_id, DATE '2023-05-01' AS date, Score AS score
                  FROM read_csv('nps_raw.csv')
            """
        )
    )
    return path


@pytest.mark.parametrize("count", [3, 40])
def test_split_sources_load_what_a_filtered_scan_loads(tmp_path: Path, count: int) -> None:
    """Frames, report (row numbers of the original files) and fingerprints alike; with 40
    partitions most are empty."""
    sources = _mixed_sources(tmp_path)
    whole = load_sources(sources)
    split = split_sources(sources, count, tmp_path / "split")
    assert set(split.tables) == {"accounts", "subscriptions", "usage", "nps"}
    assert split.fingerprints == whole.fingerprints
    examples = []
    for index in range(count):
        scanned = load_sources(sources, AccountPartition(index, count))
        loaded = load_sources(sources, AccountPartition(index, count, split))
        assert loaded.tables.keys() == scanned.tables.keys()
        for table, frame in scanned.tables.items():
            pd.testing.assert_frame_equal(loaded.tables[table], frame)
        assert loaded.report.to_dict() == scanned.report.to_dict()
        assert loaded.fingerprints == scanned.fingerprints
        examples += [e for i in loaded.report.issues for e in i.examples if i.table == "usage"]
    # the row numbers point at lines of usage.csv (1 = the first row under the header)
    rows = {example["row"]: example for example in examples if "row" in example}
    assert rows[40]["date"] == "not a date" and rows[42]["date"] == "2023-13-45", rows
    assert rows[41]["account_id"] in (None, ""), rows


def test_rows_of_a_large_csv_keep_their_line_numbers_through_the_split(tmp_path: Path) -> None:
    """A CSV large enough for DuckDB to read in parallel chunks: issues still name its rows."""
    rows = 300_000
    bad = [7, rows // 2, rows - 1]  # 0-based
    dates = pd.Series(["2023-02-01"] * rows)
    dates[bad] = "not a date"
    pd.DataFrame(
        {
            "account_id": [f"A{i % 997}" for i in range(rows)],
            "date": dates,
            "active_users": range(rows),
        }
    ).to_csv(tmp_path / "usage.csv", index=False)
    path = tmp_path / "sources.yaml"
    path.write_text("tables:\n  usage: {path: usage.csv}\n")
    split = split_sources(path, 2, tmp_path / "split")
    found = []
    for index in range(2):
        loaded = load_sources(path, AccountPartition(index, 2, split))
        order = loaded.tables["usage"]["active_users"]  # the line's position in the file
        assert order.is_monotonic_increasing and len(order) > rows // 3
        found += [
            example["row"]
            for issue in loaded.report.issues
            if issue.column == "date"
            for example in issue.examples
        ]
    assert sorted(found) == [row + 1 for row in bad]


def test_a_table_parquet_cannot_keep_is_read_from_its_source(tmp_path: Path) -> None:
    """HUGEINT ids would come back from Parquet as DOUBLE: that table is filtered while scanned."""
    ACCOUNTS.to_parquet(tmp_path / "accounts.parquet", index=False)
    path = tmp_path / "sources.yaml"
    path.write_text(
        textwrap.dedent(
            """
            tables:
              accounts: {path: accounts.parquet}
              usage:
                sql: >
                  SELECT CAST(i % 7 AS HUGEINT) AS account_id,
                         DATE '2023-01-01' + CAST(i AS INTEGER) AS date
                  FROM range(50) AS t(i)
            """
        )
    )
    split = split_sources(path, 3, tmp_path / "split")
    assert set(split.tables) == {"accounts"} and set(split.fingerprints) == {"accounts"}
    assert not (tmp_path / "split" / "usage").exists()
    for index in range(3):
        scanned = load_sources(path, AccountPartition(index, 3))
        loaded = load_sources(path, AccountPartition(index, 3, split))
        for table, frame in scanned.tables.items():
            pd.testing.assert_frame_equal(loaded.tables[table], frame)
        assert loaded.report.to_dict() == scanned.report.to_dict()
        assert loaded.fingerprints == scanned.fingerprints


def test_a_split_refuses_what_loading_refuses(tmp_path: Path) -> None:
    """A missing required column stops the split; a file that fails only once scanned is left
    to the partitions' loads, which refuse it as loading everything does."""
    sources = _mixed_sources(tmp_path)
    nps = pd.DataFrame({"Customer": ["A1"]})  # the query's `Score` is missing
    nps.to_csv(tmp_path / "nps_raw.csv", index=False)
    with pytest.raises(SourcesError) as loading:
        load_sources(sources)
    with pytest.raises(SourcesError) as splitting:
        split_sources(sources, 3, tmp_path / "split")
    assert str(splitting.value) == str(loading.value)

    sources = _mixed_sources(tmp_path / "scanned")
    pd.DataFrame({"Id": ["A1"], "start_date": ["2023-01-01"], "arr": [1.0]}).to_parquet(
        tmp_path / "scanned" / "subs-1.parquet", index=False
    )
    with pytest.raises(SourcesError) as loading:
        load_sources(sources)
    try:
        split = split_sources(sources, 3, tmp_path / "scanned-split")
    except SourcesError as error:
        assert str(error) == str(loading.value)
    else:
        assert "subscriptions" not in split.tables
        with pytest.raises(SourcesError) as partition:
            load_sources(sources, AccountPartition(0, 3, split))
        assert str(partition.value) == str(loading.value)

    split = split_sources(_mixed_sources(tmp_path / "ok"), 3, tmp_path / "ok-split")
    with pytest.raises(ValueError, match="split into 3 partitions, not 4"):
        AccountPartition(0, 4, split)


def test_a_partition_index_must_be_below_the_count() -> None:
    with pytest.raises(ValueError, match=r"not one of 0\.\.2"):
        AccountPartition(3, 3)
    assert AccountPartition(0, 1).row_filter("usage") is None
    assert AccountPartition(1, 4).row_filter("account_managers") is None
    assert AccountPartition(1, 4).row_filter("usage") == "hash({account_id}) % 4 = 1"
    assert "__account_groups" in (AccountPartition(1, 4).row_filter("usage", grouped=True) or "")


# Parent groups: P and its children C0..C7; A's child B, itself the parent of BB (a chain: only
# the direct parent counts, so B is in group A and BB alone in group B); X1 and X2, children of
# X, which is no account; Q given twice, with parents R and P (the smallest, P, is its group);
# N has revenue but no accounts row; S and R stand alone.
CHILDREN = [f"C{i}" for i in range(8)]
GROUP_ACCOUNTS = pd.DataFrame(
    {
        "account_id": ["P", *CHILDREN, "A", "B", "BB", "X1", "X2", "Q", "Q", "S", "R"],
        "parent_account_id": [None, *["P"] * 8, None, "A", "B", "X", " X ", "R", "P", "", None],
    }
)
GROUP_SUBSCRIPTIONS = pd.DataFrame(
    {
        "account_id": [*GROUP_ACCOUNTS["account_id"].drop_duplicates(), "N", "C3"],
        "start_date": "2023-01-01",
        "arr": [float(100 + 10 * i) for i in range(17)] + [20.0, 7.0],
    }
)


def _group_sources(
    tmp_path: Path,
    accounts: pd.DataFrame = GROUP_ACCOUNTS,
    subscriptions: pd.DataFrame = GROUP_SUBSCRIPTIONS,
) -> Path:
    accounts.to_csv(tmp_path / "accounts.csv", index=False)
    subscriptions.to_csv(tmp_path / "subscriptions.csv", index=False)
    path = tmp_path / "sources.yaml"
    path.write_text(
        "tables:\n  accounts: {path: accounts.csv}\n  subscriptions: {path: subscriptions.csv}\n"
    )
    return path


def _hash_partition(account_id: str, count: int) -> int:
    return int(duckdb.sql(f"SELECT hash(?) % {count}", params=[account_id]).fetchall()[0][0])


@pytest.mark.parametrize("count", [2, 3])
def test_partitions_hold_whole_parent_groups(tmp_path: Path, count: int) -> None:
    """A group the by-account hash would split lands in one partition, split or scanned, and
    `parent_arr_share` built partition by partition is the whole portfolio's."""
    assert len({_hash_partition(child, count) for child in ["P", *CHILDREN]}) > 1
    sources = _group_sources(tmp_path)
    whole = load_sources(sources)
    expected = build_account_features(whole.tables, "2023-01-01")
    split = split_sources(sources, count, tmp_path / "split")
    assert split.groups is not None
    for design in ("scan", "split"):
        parts = [
            load_sources(sources, AccountPartition(k, count, split if design == "split" else None))
            for k in range(count)
        ]
        where = {
            account: index
            for index, part in enumerate(parts)
            for account in part.tables["accounts"]["account_id"]
        }
        for group in (["P", *CHILDREN, "Q"], ["A", "B"], ["X1", "X2"]):
            assert len({where[account] for account in group}) == 1, (design, group)
        features = pd.concat(
            [
                build_account_features(part.tables, "2023-01-01")
                for part in parts
                if not part.tables["subscriptions"].empty
            ],
            ignore_index=True,
        )
        features = features.sort_values("account_id", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(
            features, expected.sort_values("account_id").reset_index(drop=True)
        )
    shares = dict(zip(expected["account_id"], expected["parent_arr_share"], strict=True))
    # group P: P, C0..C7 (C3 twice), Q
    group_p = 100.0 + sum(110.0 + 10 * i for i in range(8)) + 7.0 + 240.0
    assert shares["Q"] == pytest.approx(240.0 / group_p)
    assert shares["B"] == pytest.approx(200.0 / (190.0 + 200.0))  # group A: A and B
    assert shares["BB"] == 1.0  # alone in group B (B is in group A)
    assert shares["X1"] == pytest.approx(220.0 / (220.0 + 230.0))
    assert shares["S"] == 1.0 and pd.isna(shares["N"])


def test_the_nightly_load_in_partitions_gives_the_shares_of_one_load(tmp_path: Path) -> None:
    from serving.batch import StageTimer, load_portfolio_inputs

    # usable input (the job refuses a repeated account id and an unknown one)
    sources = _group_sources(
        tmp_path,
        GROUP_ACCOUNTS.drop_duplicates("account_id", keep="last"),
        GROUP_SUBSCRIPTIONS[GROUP_SUBSCRIPTIONS["account_id"] != "N"],
    )
    one = load_portfolio_inputs(sources, "2023-01-01", 1, StageTimer(), work_dir=tmp_path)
    three = load_portfolio_inputs(sources, "2023-01-01", 3, StageTimer(), work_dir=tmp_path)
    pd.testing.assert_frame_equal(three.features, one.features)
    assert one.features["parent_arr_share"].notna().all() and len(one.features) == 17
    shares = dict(zip(one.features["account_id"], one.features["parent_arr_share"], strict=True))
    assert shares["P"] == pytest.approx(100.0 / (sum(100.0 + 10 * i for i in range(9)) + 247.0))


def test_without_parents_the_partition_is_the_accounts_hash(tmp_path: Path) -> None:
    path = _group_sources(tmp_path, GROUP_ACCOUNTS.assign(parent_account_id=""))
    split = split_sources(path, 3, tmp_path / "split")
    assert split.groups is None
    for index in range(3):
        for partition in (AccountPartition(index, 3), AccountPartition(index, 3, split)):
            ids = load_sources(path, partition).tables["subscriptions"]["account_id"]
            assert {_hash_partition(account, 3) for account in ids} <= {index}


def test_periods_and_unknown_columns_merge() -> None:
    day = pd.Timestamp
    merged = merge_periods(
        [
            DataPeriod(day("2023-02-01"), day("2024-12-31"), {"usage": day("2023-02-01")}),
            DataPeriod(
                day("2023-01-01"),
                day("2024-11-30"),
                {"usage": day("2023-03-01"), "nps": day("2023-01-01")},
            ),
        ]
    )
    assert merged.start == day("2023-01-01") and merged.end == day("2024-12-31")
    assert merged.table_starts == {"usage": day("2023-02-01"), "nps": day("2023-01-01")}
    unknown = merge_unknown_columns(
        [{"support_tickets": {"csat", "closed_at"}}, {"support_tickets": {"csat"}}]
    )
    assert unknown == {"support_tickets": {"csat"}}


def test_empty_table_only_when_empty_in_every_partition() -> None:
    empty = Issue("nps", None, Rule.EMPTY_TABLE, "warning", 0, "nps has no usable rows")
    rows = Issue("nps", "score", Rule.NPS_OUT_OF_RANGE, "warning", 2, "2 row(s) have a score", [])
    more = Issue("nps", "score", Rule.NPS_OUT_OF_RANGE, "warning", 3, "3 row(s) have a score", [])
    loads = [TableLoad("nps", "parquet nps.parquet", 5, 5)]
    merged = merge_reports(
        [
            ValidationReport([empty], loads),
            ValidationReport([rows], loads),
            ValidationReport([more], loads),
        ],
        {},
        partitioned=True,
    )
    assert [(i.rule, i.count, i.message) for i in merged.issues] == [
        (Rule.NPS_OUT_OF_RANGE, 5, "5 row(s) have a score")
    ]
    assert merged.tables[0].rows_read == 15


def test_sharded_generation_sizes_the_partitions(tmp_path: Path) -> None:
    result = generate_and_write_shards(
        GeneratorSettings(n_accounts=90, months=6, seed=4), 2, tmp_path
    )
    loaded = load_sources(result.sources_path)
    accounts = loaded.tables["accounts"]
    assert len(accounts) == 90 and accounts["account_id"].is_unique
    assert accounts["account_id"].str.startswith(("ACC-k000-", "ACC-k001-")).all()
    assert accounts["owner_id"].dropna().isin(loaded.tables["account_managers"]["owner_id"]).all()
    assert loaded.report.ok
    rows = estimated_source_rows(loaded.config, loaded.base_dir)
    assert rows == {
        name: count for name, count in result.row_counts.items() if name != "ground_truth"
    }
    assert partition_count(rows, rows_per_partition=sum(rows.values()) // 3) in (3, 4)
    assert partition_count({"usage": 10}, rows_per_partition=100) == 1


def test_generate_command_writes_shards(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serving.cli import app
    from serving.cli import commands as _commands  # noqa: F401  (registers the subcommands)

    runner = CliRunner()
    out = tmp_path / "big"
    arguments = ["generate", "--accounts", "60", "--months", "6", "--out", str(out)]
    result = runner.invoke(app, [*arguments, "--shards", "3"])
    assert result.exit_code == 0, result.output
    assert "usage/part-*.parquet" in result.output.replace("\n", "")
    assert sorted(p.name for p in (out / "accounts").iterdir()) == [
        "part-000.parquet",
        "part-001.parquet",
        "part-002.parquet",
    ]
    assert runner.invoke(app, ["validate", "--sources", str(out / "sources.yaml")]).exit_code == 0
    bad = runner.invoke(app, [*arguments, "--shards", "61"])
    assert bad.exit_code == 1 and "--shards" in bad.output and "Traceback" not in bad.output
