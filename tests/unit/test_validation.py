"""Validation rules on small hand-made frames: one test per rule, naming table, column and rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import CONTRACT
from features.issues import Rule, ValidationReport
from features.validation import check_tables, validate_tables


def base_tables() -> dict[str, pd.DataFrame]:
    """A small valid portfolio: two accounts, their subscriptions."""
    return {
        "accounts": pd.DataFrame({"account_id": ["A1", "A2"], "segment": ["smb", "enterprise"]}),
        "subscriptions": pd.DataFrame(
            {
                "account_id": ["A1", "A2"],
                "start_date": ["2023-01-01", "2023-02-01"],
                "end_date": [None, "2024-02-01"],
                "arr": [1200.0, 50000.0],
            }
        ),
    }


def only_issue(report: ValidationReport, rule: str) -> object:
    found = report.find(rule)
    assert len(found) == 1, report.issues
    return found[0]


def test_valid_tables_have_no_issues() -> None:
    report = validate_tables(base_tables())
    assert report.issues == []
    assert report.ok


def test_unknown_table_is_an_error_listing_the_contract_tables() -> None:
    tables = {**base_tables(), "subscription": pd.DataFrame({"account_id": ["A1"]})}
    issue = only_issue(validate_tables(tables), Rule.UNKNOWN_TABLE)
    assert (issue.table, issue.severity) == ("subscription", "error")
    assert "subscriptions" in issue.message


def test_missing_required_column_names_table_and_column() -> None:
    tables = base_tables()
    tables["subscriptions"] = tables["subscriptions"].drop(columns="arr")
    report = validate_tables(tables)
    issue = only_issue(report, Rule.MISSING_REQUIRED_COLUMN)
    assert (issue.table, issue.column, issue.severity) == ("subscriptions", "arr", "error")
    assert not report.ok


def test_unparseable_required_date_excludes_the_row_and_shows_it() -> None:
    tables = base_tables()
    tables["subscriptions"].loc[1, "start_date"] = "2023-13-45"
    report = validate_tables(tables)
    issue = only_issue(report, Rule.UNPARSEABLE_VALUE)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "subscriptions",
        "start_date",
        "error",
        1,
    )
    assert issue.examples == [
        {
            "row": 2,
            "account_id": "A2",
            "start_date": "2023-13-45",
            "end_date": "2024-02-01",
            "arr": "50000.0",
        }
    ]
    load = next(load for load in report.tables if load.table == "subscriptions")
    assert (load.rows_read, load.rows_loaded, load.rows_excluded) == (2, 1, 1)


def test_unparseable_required_number_is_an_error() -> None:
    tables = base_tables()
    tables["subscriptions"]["arr"] = ["1200", "lots"]
    issue = only_issue(validate_tables(tables), Rule.UNPARSEABLE_VALUE)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "subscriptions",
        "arr",
        "error",
        1,
    )
    assert issue.examples[0]["arr"] == "lots"


def test_unparseable_optional_value_is_a_warning_and_the_row_is_kept() -> None:
    tables = base_tables()
    tables["subscriptions"]["seats"] = ["10", "many"]
    report = validate_tables(tables)
    issue = only_issue(report, Rule.UNPARSEABLE_VALUE)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "subscriptions",
        "seats",
        "warning",
        1,
    )
    assert report.ok
    load = next(load for load in report.tables if load.table == "subscriptions")
    assert load.rows_excluded == 0


def test_empty_account_id_in_accounts_is_an_error() -> None:
    tables = base_tables()
    tables["accounts"] = pd.DataFrame({"account_id": ["A1", "A2", "  "]})
    issue = only_issue(validate_tables(tables), Rule.MISSING_VALUE)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "accounts",
        "account_id",
        "error",
        1,
    )
    assert issue.examples[0]["row"] == 3


def test_duplicate_account_id_names_the_ids() -> None:
    tables = base_tables()
    tables["accounts"] = pd.DataFrame({"account_id": ["A1", "A2", "A2", "A2"]})
    issue = only_issue(validate_tables(tables), Rule.DUPLICATE_ACCOUNT_ID)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "accounts",
        "account_id",
        "error",
        3,
    )
    assert issue.examples == [{"account_id": "A2", "rows": 3}]


def test_orphans_against_given_accounts_are_errors_naming_ids() -> None:
    tables = base_tables()
    tables["support_tickets"] = pd.DataFrame(
        {"account_id": ["A1", "X9", "X9", "X7"], "created_at": ["2023-05-01"] * 4}
    )
    issue = only_issue(validate_tables(tables), Rule.ORPHAN_ACCOUNT_ID)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "support_tickets",
        "account_id",
        "error",
        3,
    )
    assert "X9" in issue.message and "X7" in issue.message
    assert issue.examples == [{"account_id": "X9", "rows": 2}, {"account_id": "X7", "rows": 1}]


@pytest.mark.parametrize("in_runs", [True, False])
def test_orphans_in_a_long_table_are_counted_row_by_row(in_runs: bool) -> None:
    """Ids in runs (an export by account) are checked once per run: the same counts."""
    rng = np.random.default_rng(3)
    known = [f"A{i}" for i in range(1, 3)]
    names = [*known, "X7", "X9"]
    runs = rng.integers(0, len(names), 4_000)
    lengths = rng.integers(1, 60, len(runs))
    ids = pd.Series(np.repeat(np.array(names)[runs], lengths), dtype="str")
    if not in_runs:
        ids = ids.sample(frac=1.0, random_state=0, ignore_index=True)
    assert len(ids) > 65_536  # long enough for the runs to be looked for
    tables = base_tables()
    tables["usage"] = pd.DataFrame({"account_id": ids, "date": "2023-05-01"})
    issue = only_issue(validate_tables(tables), Rule.ORPHAN_ACCOUNT_ID)
    orphans = ids[~ids.isin(known)].value_counts()
    assert (issue.table, issue.count) == ("usage", int(orphans.sum()))
    assert {example["account_id"]: example["rows"] for example in issue.examples} == (
        orphans.to_dict()
    )


def test_orphans_against_derived_accounts_are_warnings() -> None:
    tables = base_tables()
    del tables["accounts"]
    tables["nps"] = pd.DataFrame({"account_id": ["A1", "Z1"], "date": ["2023-05-01"] * 2})
    report = validate_tables(tables)
    issue = only_issue(report, Rule.ORPHAN_ACCOUNT_ID)
    assert (issue.table, issue.severity, issue.count) == ("nps", "warning", 1)
    assert report.ok
    derived = next(load for load in report.tables if load.table == "accounts")
    assert derived.source == "derived from subscriptions"
    assert derived.rows_loaded == 2


def test_negative_arr_is_an_error() -> None:
    tables = base_tables()
    tables["subscriptions"]["arr"] = [1200.0, -5.0]
    issue = only_issue(validate_tables(tables), Rule.NEGATIVE_ARR)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "subscriptions",
        "arr",
        "error",
        1,
    )
    assert issue.examples == [{"account_id": "A2", "start_date": "2023-02-01", "arr": -5.0}]


def test_end_date_before_start_date_is_an_error() -> None:
    tables = base_tables()
    tables["subscriptions"]["end_date"] = ["2022-12-31", None]
    issue = only_issue(validate_tables(tables), Rule.END_BEFORE_START)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "subscriptions",
        "end_date",
        "error",
        1,
    )
    assert issue.examples[0]["end_date"] == "2022-12-31"


def test_nps_outside_0_to_10_is_an_error() -> None:
    tables = base_tables()
    tables["nps"] = pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A2", "A2"],
            "date": ["2023-03-01"] * 4,
            "score": [0, 10, 11, -1],
        }
    )
    issue = only_issue(validate_tables(tables), Rule.NPS_OUT_OF_RANGE)
    assert (issue.table, issue.column, issue.severity, issue.count) == ("nps", "score", "error", 2)


def test_neither_subscriptions_nor_orders_is_an_error() -> None:
    tables = {"accounts": pd.DataFrame({"account_id": ["A1"]})}
    report = validate_tables(tables)
    issue = only_issue(report, Rule.NO_REVENUE_TABLE)
    assert issue.severity == "error"
    assert not report.ok


def test_orders_alone_are_a_revenue_table() -> None:
    tables = {
        "orders": pd.DataFrame(
            {"account_id": ["C1", "C1"], "date": [19970101, 19970315], "amount": [10.0, -2.5]}
        )
    }
    report = validate_tables(tables)
    assert report.ok and report.issues == []


def test_empty_revenue_table_is_an_error() -> None:
    tables = base_tables()
    tables["subscriptions"] = tables["subscriptions"].iloc[0:0]
    issue = only_issue(validate_tables(tables), Rule.EMPTY_TABLE)
    assert (issue.table, issue.severity) == ("subscriptions", "error")


def test_active_users_above_seats_is_a_warning() -> None:
    tables = base_tables()
    tables["usage"] = pd.DataFrame(
        {
            "account_id": ["A1", "A1"],
            "date": ["2023-03-01", "2023-03-02"],
            "active_users": [5, 12],
            "seats_licensed": [10, 10],
        }
    )
    report = validate_tables(tables)
    issue = only_issue(report, Rule.ACTIVE_USERS_ABOVE_SEATS)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "usage",
        "active_users",
        "warning",
        1,
    )
    assert report.ok


def opportunities(**columns: list) -> pd.DataFrame:
    base = {
        "account_id": ["A1", "A2"],
        "created_at": ["2023-03-01", "2023-04-01"],
        "stage": ["open", "won"],
        "kind": ["new", "expansion"],
    }
    return pd.DataFrame({**base, **columns})


def test_stage_outside_open_won_lost_is_an_error() -> None:
    tables = {**base_tables(), "opportunities": opportunities(stage=["Prospecting", "won"])}
    issue = only_issue(validate_tables(tables), Rule.UNKNOWN_STAGE)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "opportunities",
        "stage",
        "error",
        1,
    )
    assert "'prospecting'" in issue.message


def test_kind_outside_new_expansion_renewal_is_an_error() -> None:
    tables = {**base_tables(), "opportunities": opportunities(kind=["upsell", "new"])}
    issue = only_issue(validate_tables(tables), Rule.UNKNOWN_KIND)
    assert (issue.table, issue.column, issue.count) == ("opportunities", "kind", 1)


def test_stage_and_kind_are_compared_in_lower_case() -> None:
    tables = {**base_tables(), "opportunities": opportunities(stage=["Open", " WON "])}
    report = validate_tables(tables)
    assert report.issues == []


@pytest.mark.parametrize("table", ["support_tickets", "opportunities"])
def test_closed_before_created_is_a_warning(table: str) -> None:
    frame = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "created_at": ["2023-03-01", "2023-03-01"],
            "closed_at": ["2023-02-01", "2023-03-05"],
        }
    )
    report = validate_tables({**base_tables(), table: frame})
    issue = only_issue(report, Rule.CLOSED_BEFORE_CREATED)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        table,
        "closed_at",
        "warning",
        1,
    )


def test_duplicate_owner_id_in_account_managers_is_an_error() -> None:
    tables = {
        **base_tables(),
        "account_managers": pd.DataFrame({"owner_id": ["M1", "M1", "M2"]}),
    }
    issue = only_issue(validate_tables(tables), Rule.DUPLICATE_OWNER_ID)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "account_managers",
        "owner_id",
        "error",
        2,
    )


def test_account_owner_not_in_account_managers_is_a_warning() -> None:
    tables = base_tables()
    tables["accounts"]["owner_id"] = ["M1", "M9"]
    tables["account_managers"] = pd.DataFrame(
        {"owner_id": ["M1", "M2"], "capacity_accounts": [50, 40]}
    )
    report = validate_tables(tables)
    issue = only_issue(report, Rule.UNKNOWN_OWNER_ID)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "accounts",
        "owner_id",
        "warning",
        1,
    )
    assert issue.examples == [{"owner_id": "M9", "accounts": 1}]
    assert report.ok


def test_unknown_parent_account_is_a_warning() -> None:
    tables = base_tables()
    tables["accounts"]["parent_account_id"] = ["A2", "P404"]
    issue = only_issue(validate_tables(tables), Rule.UNKNOWN_PARENT_ACCOUNT)
    assert (issue.table, issue.column, issue.severity, issue.count) == (
        "accounts",
        "parent_account_id",
        "warning",
        1,
    )


def test_negative_seats_is_a_warning() -> None:
    tables = base_tables()
    tables["subscriptions"]["seats"] = [-3, 5]
    issue = only_issue(validate_tables(tables), Rule.NEGATIVE_VALUE)
    assert (issue.table, issue.column, issue.severity) == ("subscriptions", "seats", "warning")


def test_typed_frames_follow_the_contract_dtypes() -> None:
    from features.typed_tables import coerce_tables

    raw = {
        "accounts": pd.DataFrame(
            {
                "account_id": [1.0, 2.0],  # ids read as floats come back as "1", "2"
                "created_at": [20230105, 20221231],
                "is_target": ["yes", "0"],
                "employees": ["12", None],
            }
        ),
        "orders": pd.DataFrame(
            {
                "account_id": ["007", "1"],
                "date": ["2023-01-01T10:00:00+02:00", "2023-01-02 08:30:00"],
                "amount": ["1e3", 5],
            }
        ),
    }
    typed = coerce_tables(raw).tables
    accounts, orders = typed["accounts"], typed["orders"]
    assert list(accounts.columns) == CONTRACT["accounts"].column_names
    assert accounts["account_id"].tolist() == ["1", "2"]
    assert accounts["created_at"].tolist() == [
        pd.Timestamp("2023-01-05"),
        pd.Timestamp("2022-12-31"),
    ]
    assert accounts["is_target"].tolist() == [True, False]
    assert str(accounts["is_target"].dtype) == "boolean"
    assert accounts["employees"].dtype == "float64"
    assert accounts["segment"].isna().all()
    assert str(accounts["created_at"].dtype) == "datetime64[ns]"
    assert pd.api.types.is_string_dtype(accounts["account_id"])
    assert orders["account_id"].tolist() == ["007", "1"]
    # Zoned text is converted to UTC, then made naive.
    assert orders["date"].tolist() == [
        pd.Timestamp("2023-01-01 08:00:00"),
        pd.Timestamp("2023-01-02 08:30:00"),
    ]
    assert orders["amount"].tolist() == [1000.0, 5.0]


def test_check_tables_on_typed_frames_directly() -> None:
    typed = {
        "subscriptions": pd.DataFrame(
            {
                "account_id": pd.Series(["A1"], dtype="str"),
                "start_date": pd.to_datetime(["2023-01-01"]),
                "end_date": pd.to_datetime(["2022-01-01"]),
                "arr": [10.0],
                "seats": [1.0],
                "plan": pd.Series(["x"], dtype="str"),
            }
        ),
        "accounts": pd.DataFrame({"account_id": pd.Series(["A1"], dtype="str")}).assign(
            parent_account_id=pd.Series([None], dtype="str"),
            owner_id=pd.Series([None], dtype="str"),
            employees=[None],
        ),
    }
    issues = check_tables(typed)
    assert [issue.rule for issue in issues] == [Rule.END_BEFORE_START]


def test_report_to_dict_is_json_ready() -> None:
    import json

    tables = base_tables()
    tables["subscriptions"]["arr"] = [1200.0, -5.0]
    data = json.loads(json.dumps(validate_tables(tables).to_dict()))
    assert data["ok"] is False
    assert data["error_count"] == 1
    assert data["issues"][0]["rule"] == "negative_arr"
    assert data["issues"][0]["table"] == "subscriptions"
    assert data["issues"][0]["column"] == "arr"


def test_typing_is_idempotent_on_loaded_frames() -> None:
    from features.typed_tables import coerce_tables

    raw = {
        "accounts": pd.DataFrame(
            {
                "account_id": ["A1", "A2"],
                "is_target": ["yes", None],
                "created_at": ["2023-01-01", None],
            }
        ),
        "subscriptions": base_tables()["subscriptions"],
        "opportunities": opportunities(),
    }
    once = coerce_tables(raw).tables
    twice = coerce_tables(once)
    assert twice.issues == []
    for table, frame in once.items():
        pd.testing.assert_frame_equal(twice.tables[table], frame)
