"""Loading a sources.yaml: path (CSV, Parquet, JSON), columns map, sql, and every fatal problem."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from features.contract import CONTRACT
from features.issues import Rule
from features.sources import (
    AccountPartition,
    SourcesError,
    load_sources,
    read_sources_config,
    split_sources,
)
from features.validation import validate_sources


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


SUBSCRIPTIONS_CSV = """\
    Customer,Start,End,ARR,Seats
    0042,2023-01-01,,1200,5
    0043,2023-02-15,2024-02-15,"50000.5",20
    """


def test_csv_with_columns_map_is_typed(tmp_path: Path) -> None:
    write(tmp_path / "crm" / "subs.csv", SUBSCRIPTIONS_CSV)
    sources = write(
        tmp_path / "sources.yaml",
        """
        name: acme
        tables:
          subscriptions:
            path: crm/subs.csv
            columns: {account_id: Customer, start_date: Start, end_date: End, arr: ARR, seats: Seats}
        """,
    )
    loaded = load_sources(sources)
    subscriptions = loaded.tables["subscriptions"]
    assert loaded.name == "acme"
    assert loaded.base_dir == tmp_path.resolve()
    assert list(subscriptions.columns) == CONTRACT["subscriptions"].column_names
    assert subscriptions["account_id"].tolist() == ["0042", "0043"]  # leading zeros kept
    assert subscriptions["start_date"].tolist() == [
        pd.Timestamp("2023-01-01"),
        pd.Timestamp("2023-02-15"),
    ]
    assert subscriptions["end_date"].isna().tolist() == [True, False]
    assert subscriptions["arr"].tolist() == [1200.0, 50000.5]
    assert subscriptions["seats"].tolist() == [5.0, 20.0]
    assert subscriptions["plan"].isna().all()
    # accounts are derived from the revenue table when not given
    assert loaded.tables["accounts"]["account_id"].tolist() == ["0042", "0043"]
    assert loaded.report.ok and loaded.report.issues == []
    assert set(loaded.fingerprints) == {"subscriptions"}
    assert loaded.fingerprints["subscriptions"].startswith("sha256:")


def test_contract_names_match_without_a_map_and_case_insensitively(tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", "Account_ID,DATE,amount,extra\nC1,20230105,10.5,x\n")
    sources = write(tmp_path / "sources.yaml", "tables:\n  orders: {path: orders.csv}\n")
    loaded = load_sources(sources)
    orders = loaded.tables["orders"]
    assert orders[["account_id", "amount"]].values.tolist() == [["C1", 10.5]]
    assert orders["date"].tolist() == [pd.Timestamp("2023-01-05")]
    load = next(load for load in loaded.report.tables if load.table == "orders")
    assert load.ignored_columns == ["extra"]
    assert loaded.name == tmp_path.name  # defaults to the folder name


def test_parquet_path(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "date": pd.to_datetime(["2023-01-01", "2023-01-02"]),
            "active_users": [3, 4],
            "events": [100.0, 80.0],
        }
    )
    frame.to_parquet(tmp_path / "usage.parquet")
    subscriptions = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "start_date": pd.to_datetime(["2022-01-01"] * 2),
            "arr": [1.0, 2.0],
        }
    )
    subscriptions.to_parquet(tmp_path / "subscriptions.parquet")
    sources = write(
        tmp_path / "sources.yaml",
        """
        tables:
          subscriptions: {path: subscriptions.parquet}
          usage: {path: usage.parquet}
        """,
    )
    loaded = load_sources(sources)
    usage = loaded.tables["usage"]
    assert usage["active_users"].tolist() == [3.0, 4.0]
    assert usage["events"].dtype == "float64"
    assert usage["date"].tolist() == [pd.Timestamp("2023-01-01"), pd.Timestamp("2023-01-02")]
    assert usage["seats_licensed"].isna().all()
    assert loaded.report.ok


@pytest.mark.parametrize("layout", ["records", "lines"])
def test_json_path(tmp_path: Path, layout: str) -> None:
    rows = [
        {"id": "A1", "opened": "2023-01-01", "value": 100},
        {"id": "A2", "opened": "2023-03-01", "value": 250.5},
    ]
    name = "subs.json" if layout == "records" else "subs.jsonl"
    text = json.dumps(rows) if layout == "records" else "\n".join(json.dumps(r) for r in rows)
    (tmp_path / name).write_text(text)
    sources = write(
        tmp_path / "sources.yaml",
        f"""
        tables:
          subscriptions:
            path: {name}
            columns: {{account_id: id, start_date: opened, arr: value}}
        """,
    )
    subscriptions = load_sources(sources).tables["subscriptions"]
    assert subscriptions["account_id"].tolist() == ["A1", "A2"]
    assert subscriptions["arr"].tolist() == [100.0, 250.5]


@pytest.mark.parametrize("layout", ["records", "lines"])
def test_json_integer_ids_of_any_size_are_read_exactly(tmp_path: Path, layout: str) -> None:
    """DuckDB guesses a column of large integers as DOUBLE (beyond 2**64, or beside a fraction):
    the ids would be rounded (2**64 + 1 -> 18446744073709551616). Ids are read as text; an
    integral number written with a zero fraction (5.0, pandas' ids with gaps) is still 5."""
    huge = [2**63 + 1, 2**64 + 1, 10**30 + 7, 12]
    rows = [
        {"id": value, "parent": huge[(index + 1) % 4], "opened": 20230101, "value": index + 0.5}
        for index, value in enumerate(huge)
    ]
    rows.append({"id": "A-1", "parent": 5.0, "opened": "2023-01-02", "value": 7})
    rows.append({"id": 5.0, "parent": None, "opened": "2023-01-02", "value": 8})
    name = "accounts.json" if layout == "records" else "accounts.jsonl"
    text = json.dumps(rows) if layout == "records" else "\n".join(json.dumps(r) for r in rows)
    (tmp_path / name).write_text(text)
    subscriptions = [
        {"account_id": value, "start_date": "2023-01-01", "arr": 1.5} for value in [*huge, 5.0]
    ]
    (tmp_path / "subs.json").write_text(json.dumps(subscriptions))
    sources = write(
        tmp_path / "sources.yaml",
        f"""
        tables:
          accounts:
            path: {name}
            columns: {{account_id: id, parent_account_id: parent, created_at: opened, employees: value}}
          subscriptions: {{path: subs.json}}
        """,
    )
    loaded = load_sources(sources)
    assert loaded.report.ok, loaded.report.issues
    accounts = loaded.tables["accounts"]
    exact = [str(value) for value in huge]
    assert accounts["account_id"].tolist() == [*exact, "A-1", "5"]
    assert accounts["parent_account_id"].tolist()[:5] == [*exact[1:], exact[0], "5"]
    assert (
        accounts["created_at"].tolist()
        == [pd.Timestamp("2023-01-01")] * 4 + [pd.Timestamp("2023-01-02")] * 2
    )
    assert accounts["employees"].tolist() == [0.5, 1.5, 2.5, 3.5, 7.0, 8.0]
    assert loaded.tables["subscriptions"]["account_id"].tolist() == [*exact, "5"]


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        # the sniffer reads the file with the quotes as text
        (["account_id,start_date,arr", "A1,2023-01-01,100", 'A2,"2023-01-01,200'], 3),
        # the sniffer reads the file as one column
        (
            [
                "account_id,name,start_date,arr",
                'A1,"Acme, Inc",2023-01-01,100',
                'A2,"Beta,2023-01-01,200',
                'A3,"Gamma",2023-01-01,300',
                "A4,Delta,2023-01-01,4",
            ],
            3,
        ),
        # past the sniffer's sample: DuckDB's reader finds it
        (
            ["account_id,name,start_date,arr"]
            + [f'A{i},"N{i}",2023-01-01,{i}' for i in range(30_000)]
            + ['A30000,"Broken,2023-01-01,5', *[f"A{i},N,2023-01-01,1" for i in range(9)]],
            30_002,
        ),
    ],
    ids=["quotes-as-text", "one-column", "past-the-sample"],
)
def test_a_csv_quote_that_never_closes_is_an_error_naming_its_line(
    tmp_path: Path, lines: list[str], line: int
) -> None:
    """DuckDB's sniffer, meeting a quote that does not close, reads the file without quoting (or
    as one column): rows loaded with a quote in a value, or a misleading "no column" error."""
    (tmp_path / "subs.csv").write_text("\n".join(lines) + "\n")
    sources = write(tmp_path / "sources.yaml", "tables:\n  subscriptions: {path: subs.csv}\n")
    with pytest.raises(SourcesError) as raised:
        load_sources(sources)
    (issue,) = raised.value.issues
    assert issue.table == "subscriptions" and issue.rule == Rule.READ_ERROR
    assert issue.examples[0]["line"] == line
    assert issue.message.startswith(f"subscriptions: line {line:,} of 'subs.csv' opens a quoted")
    assert "unterminated quote" in issue.message and lines[line - 1][:20] in issue.message
    assert [i.message for i in validate_sources(sources).issues] == [issue.message]
    with pytest.raises(SourcesError) as splitting:
        split_sources(sources, 2, tmp_path / "split")
    assert str(splitting.value) == str(raised.value)


def test_a_quoted_value_over_several_lines_loads_with_a_warning(tmp_path: Path) -> None:
    """Valid CSV, but a quote left open on row 2 and closed by a stray quote on the next line
    reads the same: A3's row is merged into A2's name. The warning names the row."""
    (tmp_path / "subs.csv").write_text(
        "account_id,name,start_date,arr\n"
        'A1,"Acme, Inc",2023-01-01,100\n'
        'A2,"Beta,2023-01-01,200\n'
        'A3,Gamma",2023-01-01,300\n'
        "A4,Delta,2023-01-01,400\n"
    )
    sources = write(tmp_path / "sources.yaml", "tables:\n  subscriptions: {path: subs.csv}\n")
    loaded = load_sources(sources)
    assert loaded.tables["subscriptions"]["account_id"].tolist() == ["A1", "A2", "A4"]
    (warning,) = loaded.report.find(Rule.MULTILINE_VALUE, "subscriptions")
    assert warning.severity == "warning" and warning.count == 1
    assert warning.examples == [{"row": 2}] and "row 2" in warning.message
    assert loaded.report.ok
    split = split_sources(sources, 3, tmp_path / "split")
    for index in range(3):
        partition = AccountPartition(index, 3, split)
        found = load_sources(sources, partition).report.find(Rule.MULTILINE_VALUE)
        assert found == ([warning] if index == 0 else [])


def test_quotes_that_are_text_still_load(tmp_path: Path) -> None:
    """A quote inside an unquoted value is text; `quote: ''` says every quote is."""
    (tmp_path / "subs.csv").write_text(
        'account_id,start_date,arr,plan\nA1,2023-01-01,100,12" screen\nA2,2023-01-01,5,"x"\n'
    )
    (tmp_path / "usage.csv").write_text(
        'account_id,date,active_users\nA1,2023-01-01,3\n"A2,2023-01-02,4\n'
    )
    sources = write(
        tmp_path / "sources.yaml",
        """
        tables:
          subscriptions: {path: subs.csv}
          usage: {path: usage.csv, read_options: {quote: ""}}
        """,
    )
    loaded = load_sources(sources)
    assert loaded.tables["subscriptions"]["plan"].tolist() == ['12" screen', "x"]
    assert loaded.tables["usage"]["account_id"].tolist() == ["A1", '"A2']


def test_read_options_and_format(tmp_path: Path) -> None:
    write(tmp_path / "export.dat", "account_id;date;amount\nB1;2023-01-01;3,5\n")
    sources = write(
        tmp_path / "sources.yaml",
        """
        tables:
          orders:
            path: export.dat
            format: csv
            read_options: {delim: ";"}
        """,
    )
    loaded = load_sources(sources)
    # "3,5" is not a number: the row is excluded and reported, never dropped silently
    assert loaded.tables["orders"].empty
    issue = loaded.report.find(Rule.UNPARSEABLE_VALUE, "orders", "amount")[0]
    assert issue.count == 1 and issue.examples[0]["amount"] == "3,5"
    assert not loaded.report.ok


def test_glob_path_reads_several_files_as_one_table(tmp_path: Path) -> None:
    for month in (1, 2):
        pd.DataFrame(
            {"account_id": [f"A{month}"], "date": [f"2023-0{month}-01"], "amount": [float(month)]}
        ).to_parquet(tmp_path / f"orders_{month}.parquet")
    sources = write(tmp_path / "sources.yaml", "tables:\n  orders: {path: 'orders_*.parquet'}\n")
    loaded = load_sources(sources)
    assert sorted(loaded.tables["orders"]["account_id"]) == ["A1", "A2"]


def test_sql_paths_are_relative_to_the_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "data" / "lines.csv",
        "cust,day,qty,price\n7,2023-01-01,2,5.0\n7,2023-01-03,1,10.0\n",
    )
    sources = write(
        tmp_path / "conf" / "sources.yaml",
        """
        tables:
          orders:
            sql: |
              SELECT CAST(cust AS VARCHAR) AS account_id, day AS date, qty * price AS amount
              FROM read_csv('../data/lines.csv');
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_sources(sources)
    orders = loaded.tables["orders"]
    assert orders["amount"].tolist() == [10.0, 10.0]
    assert orders["account_id"].tolist() == ["7", "7"]
    assert loaded.fingerprints["orders"].startswith("sha256:")


def test_fingerprints_follow_content(tmp_path: Path) -> None:
    data = write(tmp_path / "subs.csv", "account_id,start_date,arr\nA1,2023-01-01,10\n")
    sources = write(
        tmp_path / "sources.yaml",
        """
        tables:
          subscriptions: {path: subs.csv}
          orders: {sql: "SELECT account_id, start_date AS date, arr AS amount FROM read_csv('subs.csv')"}
        """,
    )
    first = load_sources(sources).fingerprints
    assert load_sources(sources).fingerprints == first
    data.write_text("account_id,start_date,arr\nA1,2023-01-01,11\n")
    second = load_sources(sources).fingerprints
    assert second["subscriptions"] != first["subscriptions"]
    assert second["orders"] != first["orders"]


def test_account_managers_from_parquet(tmp_path: Path) -> None:
    pd.DataFrame(
        {"account_id": ["A1", "A2"], "owner_id": ["M1", "M2"], "segment": ["smb", "smb"]}
    ).to_parquet(tmp_path / "accounts.parquet")
    pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "start_date": pd.to_datetime(["2023-01-01"] * 2),
            "arr": [5.0, 6.0],
        }
    ).to_parquet(tmp_path / "subscriptions.parquet")
    pd.DataFrame(
        {
            "owner_id": ["M1", "M2"],
            "name": ["Ann", "Bo"],
            "seniority": ["senior", "junior"],
            "capacity_accounts": [40, 60],
            "capacity_hours": [120.0, 140.0],
        }
    ).to_parquet(tmp_path / "account_managers.parquet")
    sources = write(
        tmp_path / "sources.yaml",
        """
        tables:
          accounts: {path: accounts.parquet}
          subscriptions: {path: subscriptions.parquet}
          account_managers: {path: account_managers.parquet}
        """,
    )
    loaded = load_sources(sources)
    managers = loaded.tables["account_managers"]
    assert managers["capacity_accounts"].tolist() == [40.0, 60.0]
    assert loaded.report.ok and loaded.report.issues == []


def test_missing_file_names_table_and_path(tmp_path: Path) -> None:
    sources = write(tmp_path / "sources.yaml", "tables:\n  orders: {path: exports/orders.csv}\n")
    with pytest.raises(SourcesError) as caught:
        load_sources(sources)
    assert "orders" in str(caught.value) and "exports/orders.csv" in str(caught.value)
    report = validate_sources(sources)
    issue = report.find(Rule.FILE_NOT_FOUND)[0]
    assert (issue.table, issue.severity) == ("orders", "error")


def test_missing_sources_file(tmp_path: Path) -> None:
    report = validate_sources(tmp_path / "nope.yaml")
    assert [issue.rule for issue in report.issues] == [Rule.FILE_NOT_FOUND]
    assert not report.ok


def test_sql_error_shows_table_query_and_duckdb_error(tmp_path: Path) -> None:
    sources = write(
        tmp_path / "sources.yaml",
        """
        tables:
          orders:
            sql: SELECT account_id, date, amount FROM read_csv('missing_orders.csv')
        """,
    )
    with pytest.raises(SourcesError) as caught:
        load_sources(sources)
    message = str(caught.value)
    assert message.startswith("orders: the SQL query failed")
    assert "SELECT account_id, date, amount FROM read_csv" in message
    assert "missing_orders.csv" in message and "DuckDB:" in message
    assert caught.value.issues[0].rule == Rule.SQL_ERROR


def test_sql_runtime_error_is_reported(tmp_path: Path) -> None:
    sources = write(
        tmp_path / "sources.yaml",
        """
        tables:
          orders:
            sql: SELECT 'A' AS account_id, DATE '2023-01-01' AS date, CAST('x' AS INTEGER) AS amount
        """,
    )
    report = validate_sources(sources)
    issue = report.find(Rule.SQL_ERROR)[0]
    assert issue.table == "orders" and "Conversion Error" in issue.message


def test_unknown_table_lists_unknown_and_allowed_names(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", "account_id\nA\n")
    sources = write(
        tmp_path / "sources.yaml",
        "tables:\n  customers: {path: x.csv}\n  deals: {path: x.csv}\n",
    )
    with pytest.raises(SourcesError) as caught:
        load_sources(sources)
    assert [issue.table for issue in caught.value.issues] == ["customers", "deals"]
    assert all(issue.rule == Rule.UNKNOWN_TABLE for issue in caught.value.issues)
    assert "accounts, subscriptions, orders" in str(caught.value)


def test_unknown_column_in_columns_map(tmp_path: Path) -> None:
    sources = write(
        tmp_path / "sources.yaml",
        "tables:\n  orders: {path: o.csv, columns: {customer: Id}}\n",
    )
    with pytest.raises(SourcesError) as caught:
        read_sources_config(sources)
    issue = caught.value.issues[0]
    assert (issue.table, issue.column, issue.rule) == ("orders", "customer", Rule.UNKNOWN_COLUMN)


def test_missing_required_column_is_fatal_for_the_table(tmp_path: Path) -> None:
    write(tmp_path / "o.csv", "account_id,amount\nA,1\n")
    sources = write(tmp_path / "sources.yaml", "tables:\n  orders: {path: o.csv}\n")
    with pytest.raises(SourcesError) as caught:
        load_sources(sources)
    issue = caught.value.issues[0]
    assert (issue.table, issue.column, issue.rule) == (
        "orders",
        "date",
        Rule.MISSING_REQUIRED_COLUMN,
    )


def test_mapped_column_absent_from_the_source(tmp_path: Path) -> None:
    write(tmp_path / "o.csv", "account_id,date,amount\nA,2023-01-01,1\n")
    sources = write(
        tmp_path / "sources.yaml", "tables:\n  orders: {path: o.csv, columns: {amount: Total}}\n"
    )
    report = validate_sources(sources)
    issue = report.find(Rule.MAPPED_COLUMN_NOT_FOUND)[0]
    assert (issue.table, issue.column) == ("orders", "amount")
    assert "Total" in issue.message


@pytest.mark.parametrize(
    "text",
    [
        "tables: [orders\n",  # not YAML
        "- just\n- a list\n",  # not a mapping
        "tables:\n  orders: {path: o.csv, sql: 'SELECT 1'}\n",  # both path and sql
        "tables:\n  orders: {}\n",  # neither
        "tabels:\n  orders: {path: o.csv}\n",  # misspelt key
        "tables:\n  orders: {path: o.unknown}\n",  # format not known from the extension
    ],
)
def test_malformed_sources_yaml(tmp_path: Path, text: str) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(text)
    with pytest.raises(SourcesError):
        load_sources(sources)
    report = validate_sources(sources)
    assert not report.ok
    assert report.errors[0].rule == Rule.INVALID_CONFIG


def test_excluded_rows_are_all_accounted_for(tmp_path: Path) -> None:
    write(
        tmp_path / "subs.csv",
        """\
        account_id,start_date,arr,seats
        A1,2023-01-01,10,1
        ,2023-01-01,10,1
        A3,someday,10,1
        A4,2023-01-01,,x
        A5,2023-01-01,5,2
        """,
    )
    sources = write(tmp_path / "sources.yaml", "tables:\n  subscriptions: {path: subs.csv}\n")
    loaded = load_sources(sources)
    load = loaded.report.tables[0]
    assert (load.rows_read, load.rows_loaded, load.rows_excluded) == (5, 2, 3)
    assert len(loaded.tables["subscriptions"]) == 2
    excluded = {
        (issue.column, issue.rule): issue.count
        for issue in loaded.report.issues
        if issue.severity == "error"
    }
    assert excluded == {
        ("account_id", Rule.MISSING_VALUE): 1,
        ("start_date", Rule.UNPARSEABLE_VALUE): 1,
        ("arr", Rule.MISSING_VALUE): 1,
    }
    seats = loaded.report.find(Rule.UNPARSEABLE_VALUE, "subscriptions", "seats")[0]
    assert seats.severity == "warning" and seats.examples[0]["row"] == 4
    with pytest.raises(SourcesError, match=r"subscriptions\.account_id"):
        loaded.raise_for_errors()


def test_hand_written_sources_yaml_against_the_contract_validates(tmp_path: Path) -> None:
    """A sources.yaml someone writes from docs/data-contract.md, over their own CSV exports."""
    write(
        tmp_path / "crm" / "accounts.csv",
        """\
        Id,Company,Tier,Sector,Territory,Staff,Since,Owner,Target
        1001,Acme,enterprise,manufacturing,EMEA,5200,2019-04-01,U1,yes
        1002,Globex,mid-market,retail,NA,800,2021-09-15,U2,no
        1003,Initech,smb,software,NA,45,2022-01-10,U2,no
        """,
    )
    write(
        tmp_path / "billing" / "contracts.csv",
        """\
        Id,Begins,Ends,AnnualValue,Licences,Product
        1001,2022-01-01,,120000,400,platform
        1002,2022-06-01,2023-06-01,30000,50,core
        1003,2023-02-01,,4000,5,core
        """,
    )
    write(
        tmp_path / "product" / "usage.csv",
        """\
        Id,Week,Users,Events,Seats
        1001,2023-03-06,310,15000,400
        1003,2023-03-06,4,90,5
        """,
    )
    write(
        tmp_path / "support" / "tickets.csv",
        """\
        Id,Opened,Closed,Severity,Satisfaction
        1001,2023-03-01 09:15:00,2023-03-02 10:00:00,high,4
        1002,2023-03-05 11:00:00,,low,
        """,
    )
    write(
        tmp_path / "crm" / "opportunities.csv",
        """\
        Id,Created,Closed,Stage,Amount,Type
        1001,2023-01-10,2023-02-01,Won,20000,Expansion
        1003,2023-02-15,,Open,3000,Renewal
        """,
    )
    write(
        tmp_path / "crm" / "owners.csv",
        "Owner,FullName,Level,MaxAccounts,Hours\nU1,Ann,senior,40,120\nU2,Bo,junior,80,150\n",
    )
    sources = write(
        tmp_path / "sources.yaml",
        """
        name: hand-written
        tables:
          accounts:
            path: crm/accounts.csv
            columns: {account_id: Id, name: Company, segment: Tier, industry: Sector,
                      region: Territory, employees: Staff, created_at: Since,
                      owner_id: Owner, is_target: Target}
          subscriptions:
            path: billing/contracts.csv
            columns: {account_id: Id, start_date: Begins, end_date: Ends, arr: AnnualValue,
                      seats: Licences, plan: Product}
          usage:
            path: product/usage.csv
            columns: {account_id: Id, date: Week, active_users: Users, events: Events,
                      seats_licensed: Seats}
          support_tickets:
            path: support/tickets.csv
            columns: {account_id: Id, created_at: Opened, closed_at: Closed,
                      priority: Severity, csat: Satisfaction}
          opportunities:
            path: crm/opportunities.csv
            columns: {account_id: Id, created_at: Created, closed_at: Closed, stage: Stage,
                      amount: Amount, kind: Type}
          account_managers:
            path: crm/owners.csv
            columns: {owner_id: Owner, name: FullName, seniority: Level,
                      capacity_accounts: MaxAccounts, capacity_hours: Hours}
        """,
    )
    loaded = load_sources(sources)
    assert loaded.report.ok, loaded.report.issues
    assert loaded.report.issues == []
    assert set(loaded.tables) == {
        "accounts",
        "subscriptions",
        "usage",
        "support_tickets",
        "opportunities",
        "account_managers",
    }
    accounts = loaded.tables["accounts"]
    assert accounts["is_target"].tolist() == [True, False, False]
    assert accounts["employees"].tolist() == [5200.0, 800.0, 45.0]
    assert loaded.tables["opportunities"]["stage"].tolist() == ["won", "open"]
    assert sorted(loaded.fingerprints) == sorted(loaded.tables)


def test_compressed_csv_and_tsv(tmp_path: Path) -> None:
    import gzip

    with gzip.open(tmp_path / "orders.csv.gz", "wt") as handle:
        handle.write("account_id,date,amount\nA,2023-01-01,1.5\n")
    (tmp_path / "nps.tsv").write_text("account_id\tdate\tscore\nA\t2023-01-01 10:00\t9\n")
    sources = write(
        tmp_path / "sources.yaml",
        "tables:\n  orders: {path: orders.csv.gz}\n  nps: {path: nps.tsv}\n",
    )
    loaded = load_sources(sources)
    assert loaded.tables["orders"]["amount"].tolist() == [1.5]
    assert loaded.tables["nps"]["date"].tolist() == [pd.Timestamp("2023-01-01 10:00")]
    assert loaded.tables["nps"]["score"].tolist() == [9.0]
    assert loaded.report.ok


def test_parquet_exclusions_name_the_source_row(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "account_id": ["A1", "A2", None, "A4"],
            "date": pd.to_datetime(["2023-01-01", None, "2023-01-03", "2023-01-04"]),
            "amount": [1.0, 2.0, 3.0, float("nan")],
        }
    ).to_parquet(tmp_path / "orders.parquet")
    sources = write(tmp_path / "sources.yaml", "tables:\n  orders: {path: orders.parquet}\n")
    loaded = load_sources(sources)
    assert loaded.tables["orders"]["account_id"].tolist() == ["A1"]
    rows = {
        issue.column: [example["row"] for example in issue.examples]
        for issue in loaded.report.find(Rule.MISSING_VALUE, "orders")
    }
    assert rows == {"account_id": [3], "date": [2], "amount": [4]}


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_loaded_rows_keep_the_source_order(tmp_path: Path, file_format: str) -> None:
    """Rows come out in the order of the file, also when DuckDB reads it on several threads."""
    rows = 600_000
    ids = pd.Series([f"ACC-{i % 7919:05d}" for i in range(rows)])
    ids[::1000] = " " + ids[::1000] + "\u00a0"  # edge white space on some ids: trimmed
    usage = pd.DataFrame(
        {
            "account_id": ids,
            "date": pd.Timestamp("2023-01-01") + pd.to_timedelta(pd.RangeIndex(rows) % 700, "D"),
            "events": pd.RangeIndex(rows).astype("float64"),
        }
    )
    subscriptions = pd.DataFrame(
        {"account_id": ["ACC-00001"], "start_date": [pd.Timestamp("2022-01-01")], "arr": [1.0]}
    )
    if file_format == "parquet":
        usage.to_parquet(tmp_path / "usage.parquet", row_group_size=20_000)
    else:
        usage.to_csv(tmp_path / "usage.csv", index=False)
    subscriptions.to_parquet(tmp_path / "subscriptions.parquet")
    sources = write(
        tmp_path / "sources.yaml",
        f"""
        tables:
          subscriptions: {{path: subscriptions.parquet}}
          usage: {{path: usage.{file_format}}}
        """,
    )
    loaded = load_sources(sources).tables["usage"]
    assert loaded["events"].tolist() == usage["events"].tolist()
    assert loaded["account_id"].tolist() == ids.str.strip().tolist()
