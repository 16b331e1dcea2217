"""Validation of contract tables: the rules, their severities and the report.

An *error* makes the data unusable or its numbers wrong (`portfolio validate`
exits 1); a *warning* is worth knowing but the data can be used. The rules:

| rule | table.column | severity |
|---|---|---|
| invalid_config, unknown_table, unknown_column | sources.yaml | error |
| file_not_found, sql_error, read_error | the table | error |
| missing_required_column, mapped_column_not_found, duplicate_column | the table | error |
| multiline_value (a CSV quoted value over several lines) | the table | warning |
| missing_value (required column; rows excluded) | any | error |
| unparseable_value in a required column (rows excluded) | any | error |
| unparseable_value in an optional column (value set missing) | any | warning |
| no_revenue_table (neither subscriptions nor orders) | - | error |
| empty_table: revenue table / other table | any | error / warning |
| duplicate_account_id | accounts.account_id | error |
| orphan_account_id: accounts given / accounts derived | any.account_id | error / warning |
| unknown_parent_account | accounts.parent_account_id | warning |
| negative_arr | subscriptions.arr | error |
| end_before_start | subscriptions.end_date | error |
| nps_out_of_range (outside 0-10) | nps.score | error |
| unknown_stage, unknown_kind | opportunities.stage / kind | error |
| closed_before_created | support_tickets / opportunities .closed_at | warning |
| active_users_above_seats | usage.active_users | warning |
| negative_value (seats, counts, employees, capacities) | several | warning |
| duplicate_owner_id | account_managers.owner_id | error |
| unknown_owner_id | accounts.owner_id | warning |

`docs/data-contract.md` explains each rule for users.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import (
    CONTRACT,
    OPPORTUNITY_KINDS,
    OPPORTUNITY_STAGES,
    REVENUE_TABLES,
    Tables,
)
from features.id_runs import by_runs
from features.issues import (
    EXAMPLE_ROWS,
    Issue,
    Rule,
    Severity,
    TableLoad,
    ValidationReport,
    json_safe,
)
from features.typed_tables import coerce_tables, derive_accounts

NPS_MIN, NPS_MAX = 0.0, 10.0
# How many offending ids an issue names.
EXAMPLE_IDS = 5

# Optional numeric columns that count things and cannot be negative.
NON_NEGATIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": ("employees",),
    "subscriptions": ("seats",),
    "usage": ("active_users", "events", "seats_licensed"),
    "account_managers": ("capacity_accounts", "capacity_hours"),
}

__all__ = [
    "Issue",
    "Rule",
    "TableLoad",
    "ValidationReport",
    "check_loaded_tables",
    "check_tables",
    "validate_sources",
    "validate_tables",
]


def validate_tables(tables: Tables) -> ValidationReport:
    """Type `tables` to the contract (as loading does) and check every rule."""
    typed = coerce_tables(tables)
    _, report = check_loaded_tables(typed.tables, typed.loads, typed.issues)
    return report


def validate_sources(path: str | Path) -> ValidationReport:
    """Load a `sources.yaml` and check every rule; a fatal loading problem becomes an error issue."""
    # Imported here because the loader itself builds on this module's rules.
    from features.sources import SourcesError, load_sources

    try:
        return load_sources(path).report
    except SourcesError as error:
        return ValidationReport(issues=list(error.issues), sources=str(path))


def check_loaded_tables(
    tables: Tables,
    loads: list[TableLoad],
    issues: list[Issue],
    *,
    name: str | None = None,
    sources: str | None = None,
) -> tuple[Tables, ValidationReport]:
    """Complete typed tables (derive accounts when absent) and check the rules.

    Returns the completed tables and the report holding the loading `issues`
    followed by the rule issues.
    """
    completed = dict(tables)
    loads = list(loads)
    accounts_derived = "accounts" not in completed
    if accounts_derived and any(table in completed for table in REVENUE_TABLES):
        completed["accounts"] = derive_accounts(completed)
        given = [table for table in REVENUE_TABLES if table in completed]
        n_accounts = len(completed["accounts"])
        loads.append(
            TableLoad("accounts", f"derived from {' and '.join(given)}", n_accounts, n_accounts)
        )
    rule_issues = check_tables(completed, accounts_derived=accounts_derived)
    report = ValidationReport(
        issues=[*issues, *rule_issues], tables=loads, name=name, sources=sources
    )
    return completed, report


def check_tables(tables: Tables, *, accounts_derived: bool = False) -> list[Issue]:
    """Every rule on typed contract tables (as loading returns them)."""
    issues: list[Issue] = []
    issues += _check_revenue_present(tables)
    issues += _check_empty_tables(tables)
    issues += _check_accounts(tables)
    issues += _check_orphans(tables, accounts_derived=accounts_derived)
    issues += _check_subscriptions(tables)
    issues += _check_usage(tables)
    issues += _check_closed_before_created(tables)
    issues += _check_opportunities(tables)
    issues += _check_nps(tables)
    issues += _check_account_managers(tables)
    issues += _check_non_negative(tables)
    return issues


def _check_revenue_present(tables: Tables) -> list[Issue]:
    if any(table in tables for table in REVENUE_TABLES):
        return []
    return [
        Issue(
            None,
            None,
            Rule.NO_REVENUE_TABLE,
            "error",
            0,
            "neither 'subscriptions' nor 'orders' is given: one revenue table is required "
            "(ARR, churn and upsell are computed from it)",
        )
    ]


def _check_empty_tables(tables: Tables) -> list[Issue]:
    issues = []
    for table, frame in tables.items():
        if len(frame):
            continue
        severity: Severity = "error" if table in REVENUE_TABLES else "warning"
        issues.append(
            Issue(table, None, Rule.EMPTY_TABLE, severity, 0, f"{table} has no usable rows")
        )
    return issues


def _check_accounts(tables: Tables) -> list[Issue]:
    if "accounts" not in tables:
        return []
    accounts = tables["accounts"]
    issues = []
    ids = accounts["account_id"].dropna()
    counts = ids.value_counts()
    duplicated = counts[counts > 1]
    if len(duplicated):
        rows = int(duplicated.sum())
        issues.append(
            Issue(
                "accounts",
                "account_id",
                Rule.DUPLICATE_ACCOUNT_ID,
                "error",
                rows,
                f"{len(duplicated):,} account id(s) appear more than once in accounts "
                f"({rows:,} rows), e.g. {_id_list(duplicated.index)}; account_id must be unique",
                _id_examples(duplicated),
            )
        )
    parents = accounts["parent_account_id"]
    unknown_parent = parents.notna() & ~_is_in(parents, ids)
    issue = _row_issue(
        "accounts",
        "parent_account_id",
        Rule.UNKNOWN_PARENT_ACCOUNT,
        "warning",
        accounts,
        unknown_parent,
        ["account_id", "parent_account_id"],
        "row(s) name a parent_account_id that is not an account; they are not rolled up",
    )
    return [*issues, *([issue] if issue else [])]


def _check_orphans(tables: Tables, *, accounts_derived: bool) -> list[Issue]:
    if "accounts" not in tables:
        return []
    known = tables["accounts"]["account_id"]
    severity: Severity = "warning" if accounts_derived else "error"
    issues = []
    for table, frame in tables.items():
        if table in ("accounts", "account_managers") or "account_id" not in frame:
            continue
        orphan = ~_is_in(frame["account_id"], known)
        count = int(orphan.sum())
        if not count:
            continue
        ids = frame.loc[orphan, "account_id"].value_counts()
        if accounts_derived:
            consequence = (
                "accounts are derived from the revenue table, so these rows belong to "
                "accounts without revenue and are not scored"
            )
        else:
            consequence = "every account_id must be in accounts"
        issues.append(
            Issue(
                table,
                "account_id",
                Rule.ORPHAN_ACCOUNT_ID,
                severity,
                count,
                f"{count:,} row(s) of {table} ({len(ids):,} account id(s)) have an account_id "
                f"that is not in accounts, e.g. {_id_list(ids.index)}; {consequence}",
                _id_examples(ids),
            )
        )
    return issues


def _check_subscriptions(tables: Tables) -> list[Issue]:
    if "subscriptions" not in tables:
        return []
    subscriptions = tables["subscriptions"]
    found = [
        _row_issue(
            "subscriptions",
            "arr",
            Rule.NEGATIVE_ARR,
            "error",
            subscriptions,
            subscriptions["arr"] < 0,
            ["account_id", "start_date", "arr"],
            "subscription(s) have a negative arr; ARR must be >= 0 "
            "(give cancellations an end_date instead)",
        ),
        _row_issue(
            "subscriptions",
            "end_date",
            Rule.END_BEFORE_START,
            "error",
            subscriptions,
            subscriptions["end_date"] < subscriptions["start_date"],
            ["account_id", "start_date", "end_date"],
            "subscription(s) end before they start (end_date < start_date)",
        ),
    ]
    return [issue for issue in found if issue]


def _check_usage(tables: Tables) -> list[Issue]:
    if "usage" not in tables:
        return []
    usage = tables["usage"]
    issue = _row_issue(
        "usage",
        "active_users",
        Rule.ACTIVE_USERS_ABOVE_SEATS,
        "warning",
        usage,
        usage["active_users"] > usage["seats_licensed"],
        ["account_id", "date", "active_users", "seats_licensed"],
        "usage row(s) have more active_users than seats_licensed",
    )
    return [issue] if issue else []


def _check_closed_before_created(tables: Tables) -> list[Issue]:
    issues = []
    for table in ("support_tickets", "opportunities"):
        if table not in tables:
            continue
        frame = tables[table]
        issue = _row_issue(
            table,
            "closed_at",
            Rule.CLOSED_BEFORE_CREATED,
            "warning",
            frame,
            frame["closed_at"] < frame["created_at"],
            ["account_id", "created_at", "closed_at"],
            f"{table} row(s) are closed before they were created (closed_at < created_at)",
        )
        if issue:
            issues.append(issue)
    return issues


def _check_opportunities(tables: Tables) -> list[Issue]:
    if "opportunities" not in tables:
        return []
    opportunities = tables["opportunities"]
    issues = []
    for column, rule, allowed in (
        ("stage", Rule.UNKNOWN_STAGE, OPPORTUNITY_STAGES),
        ("kind", Rule.UNKNOWN_KIND, OPPORTUNITY_KINDS),
    ):
        values = opportunities[column]
        unknown = values.notna() & ~values.isin(allowed)
        seen = ", ".join(repr(value) for value in values[unknown].unique()[:EXAMPLE_IDS])
        issue = _row_issue(
            "opportunities",
            column,
            rule,
            "error",
            opportunities,
            unknown,
            ["account_id", "created_at", column],
            f"opportunities have a {column} outside {'/'.join(allowed)} (seen: {seen}); "
            "map the values in the SQL, e.g. with CASE",
        )
        if issue:
            issues.append(issue)
    return issues


def _check_nps(tables: Tables) -> list[Issue]:
    if "nps" not in tables:
        return []
    nps = tables["nps"]
    score = nps["score"]
    issue = _row_issue(
        "nps",
        "score",
        Rule.NPS_OUT_OF_RANGE,
        "error",
        nps,
        (score < NPS_MIN) | (score > NPS_MAX),
        ["account_id", "date", "score"],
        f"NPS answer(s) have a score outside {NPS_MIN:g}-{NPS_MAX:g}",
    )
    return [issue] if issue else []


def _check_account_managers(tables: Tables) -> list[Issue]:
    if "account_managers" not in tables:
        return []
    managers = tables["account_managers"]
    issues = []
    counts = managers["owner_id"].dropna().value_counts()
    duplicated = counts[counts > 1]
    if len(duplicated):
        rows = int(duplicated.sum())
        issues.append(
            Issue(
                "account_managers",
                "owner_id",
                Rule.DUPLICATE_OWNER_ID,
                "error",
                rows,
                f"{len(duplicated):,} owner id(s) appear more than once in account_managers "
                f"({rows:,} rows), e.g. {_id_list(duplicated.index)}; owner_id must be unique",
                _id_examples(duplicated, key="owner_id"),
            )
        )
    if "accounts" in tables:
        owners = tables["accounts"]["owner_id"]
        unknown = owners.notna() & ~_is_in(owners, managers["owner_id"])
        if unknown.any():
            ids = owners[unknown].value_counts()
            count = int(unknown.sum())
            issues.append(
                Issue(
                    "accounts",
                    "owner_id",
                    Rule.UNKNOWN_OWNER_ID,
                    "warning",
                    count,
                    f"{count:,} account(s) have an owner_id that is not in account_managers, "
                    f"e.g. {_id_list(ids.index)}; allocation treats them as unowned",
                    _id_examples(ids, key="owner_id", count_name="accounts"),
                )
            )
    return issues


def _check_non_negative(tables: Tables) -> list[Issue]:
    issues = []
    for table, columns in NON_NEGATIVE_COLUMNS.items():
        if table not in tables:
            continue
        frame = tables[table]
        key = CONTRACT[table].columns[0].name
        for column in columns:
            issue = _row_issue(
                table,
                column,
                Rule.NEGATIVE_VALUE,
                "warning",
                frame,
                frame[column] < 0,
                [key, column],
                f"row(s) have a negative {column}, which counts something and should be >= 0",
            )
            if issue:
                issues.append(issue)
    return issues


def _row_issue(
    table: str,
    column: str,
    rule: str,
    severity: Severity,
    frame: pd.DataFrame,
    mask: pd.Series,
    example_columns: list[str],
    what: str,
) -> Issue | None:
    """An issue for the rows of `frame` where `mask` holds (missing counts as False)."""
    mask = mask.fillna(False).astype(bool)
    count = int(mask.sum())
    if not count:
        return None
    rows = frame.loc[mask, example_columns].head(EXAMPLE_ROWS)
    examples = [
        {name: json_safe(value) for name, value in record.items()}
        for record in rows.to_dict("records")
    ]
    return Issue(table, column, rule, severity, count, f"{count:,} {what}", examples)


def _is_in(values: pd.Series, allowed: pd.Series) -> pd.Series:
    """Whether each value is one of `allowed` (missing -> False), vectorised in Arrow.

    pandas' own isin on string columns converts the allowed values one by one,
    which is slow for 100,000s of account ids.
    """
    column = pa.array(values.astype("str"), from_pandas=True)
    value_set = pa.array(allowed.astype("str").dropna().unique(), from_pandas=True)
    if value_set.type != column.type:
        value_set = value_set.cast(column.type)
    found = by_runs(  # ids that come in runs: one test per run
        column, lambda ids: np.asarray(pc.is_in(ids, value_set=value_set).fill_null(False))
    )
    return pd.Series(found, index=values.index)


def _id_list(ids: Iterable[object]) -> str:
    shown = [str(value) for value in list(ids)[:EXAMPLE_IDS]]
    return ", ".join(shown)


def _id_examples(
    counts: pd.Series, key: str = "account_id", count_name: str = "rows"
) -> list[dict[str, object]]:
    return [
        {key: json_safe(value), count_name: int(n)} for value, n in counts.head(EXAMPLE_IDS).items()
    ]
