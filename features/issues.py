"""Data-quality issues and the validation report.

The loader (`features.sources`) and the rules (`features.validation`) describe
every problem they find as an `Issue`; a `ValidationReport` collects them with
what was loaded per table. The report is plain data: `to_dict()` gives JSON,
and rich renders it (`console.print(report)`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import pandas as pd
from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

Severity = Literal["error", "warning"]

# How many example rows an issue carries.
EXAMPLE_ROWS = 3


class Rule(StrEnum):
    """The name of each check; `Issue.rule` holds one of these values."""

    INVALID_CONFIG = "invalid_config"
    UNKNOWN_TABLE = "unknown_table"
    UNKNOWN_COLUMN = "unknown_column"
    FILE_NOT_FOUND = "file_not_found"
    SQL_ERROR = "sql_error"
    READ_ERROR = "read_error"
    MISSING_REQUIRED_COLUMN = "missing_required_column"
    MAPPED_COLUMN_NOT_FOUND = "mapped_column_not_found"
    DUPLICATE_COLUMN = "duplicate_column"
    MULTILINE_VALUE = "multiline_value"
    MISSING_VALUE = "missing_value"
    UNPARSEABLE_VALUE = "unparseable_value"
    NO_REVENUE_TABLE = "no_revenue_table"
    EMPTY_TABLE = "empty_table"
    DUPLICATE_ACCOUNT_ID = "duplicate_account_id"
    ORPHAN_ACCOUNT_ID = "orphan_account_id"
    UNKNOWN_PARENT_ACCOUNT = "unknown_parent_account"
    NEGATIVE_ARR = "negative_arr"
    NEGATIVE_VALUE = "negative_value"
    END_BEFORE_START = "end_before_start"
    CLOSED_BEFORE_CREATED = "closed_before_created"
    NPS_OUT_OF_RANGE = "nps_out_of_range"
    ACTIVE_USERS_ABOVE_SEATS = "active_users_above_seats"
    UNKNOWN_STAGE = "unknown_stage"
    UNKNOWN_KIND = "unknown_kind"
    DUPLICATE_OWNER_ID = "duplicate_owner_id"
    UNKNOWN_OWNER_ID = "unknown_owner_id"


@dataclass(frozen=True)
class Issue:
    """One problem: where (table, column), which rule, how bad, how many rows, examples."""

    table: str | None
    column: str | None
    rule: str
    severity: Severity
    count: int
    message: str
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TableLoad:
    """What loading did with one table."""

    table: str
    source: str
    rows_read: int
    rows_loaded: int
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rows_excluded(self) -> int:
        return self.rows_read - self.rows_loaded

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_excluded": self.rows_excluded}


@dataclass(frozen=True)
class ValidationReport:
    """Everything validation found. `ok` means usable: no issue of severity error."""

    issues: list[Issue] = field(default_factory=list)
    tables: list[TableLoad] = field(default_factory=list)
    name: str | None = None
    sources: str | None = None

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def find(self, rule: str, table: str | None = None, column: str | None = None) -> list[Issue]:
        """The issues of `rule`, optionally only those on `table` (and `column`)."""
        return [
            issue
            for issue in self.issues
            if issue.rule == rule
            and (table is None or issue.table == table)
            and (column is None or issue.column == column)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sources": self.sources,
            "ok": self.ok,
            "error_count": len(self.errors),
            "warning_count": len(self.warnings),
            "tables": [load.to_dict() for load in self.tables],
            "issues": [issue.to_dict() for issue in self.issues],
        }

    def __rich__(self) -> Group:
        return render_report(self)


def render_report(report: ValidationReport) -> Group:
    """A readable rich rendering: rows loaded per table, then every issue with its examples."""
    parts: list[Any] = []
    title = "Validation of " + (report.sources or "tables")
    if report.name:
        title += f" ({report.name})"
    parts.append(Text(title, style="bold"))

    if report.tables:
        loads = Table(show_edge=False, pad_edge=False)
        loads.add_column("table")
        for header in ("rows read", "loaded", "excluded"):
            loads.add_column(header, justify="right")
        loads.add_column("source", overflow="fold")
        for load in report.tables:
            excluded = f"[red]{load.rows_excluded:,}[/]" if load.rows_excluded else "0"
            loads.add_row(
                load.table,
                f"{load.rows_read:,}",
                f"{load.rows_loaded:,}",
                excluded,
                load.source,
            )
        parts.append(loads)
        for load in report.tables:
            if load.ignored_columns:
                parts.append(
                    Text(
                        f"{load.table}: source columns not in the contract (ignored): "
                        + ", ".join(load.ignored_columns),
                        style="dim",
                    )
                )

    ordered = sorted(report.issues, key=lambda issue: issue.severity != "error")
    for issue in ordered:
        style = "bold red" if issue.severity == "error" else "bold yellow"
        where = ".".join(part for part in (issue.table, issue.column) if part) or "sources"
        header = Text()
        header.append(f"{issue.severity.upper():<8}", style=style)
        header.append(f"{where}  ", style="bold")
        header.append(str(issue.rule), style="cyan")
        if issue.count:
            header.append(f"  ({issue.count:,} row{'s' if issue.count != 1 else ''})")
        body = Text(issue.message)
        for example in issue.examples:
            body.append("\ne.g. " + _example_text(example), style="dim")
        parts.extend([Text(), header, Padding(body, (0, 0, 0, 8))])

    n_errors, n_warnings = len(report.errors), len(report.warnings)
    parts.append(Text())
    if report.ok:
        parts.append(Text(f"usable: 0 errors, {n_warnings} warning(s)", style="bold green"))
    else:
        parts.append(
            Text(f"not usable: {n_errors} error(s), {n_warnings} warning(s)", style="bold red")
        )
    return Group(*parts)


def _example_text(example: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
        for key, value in example.items()
    )


def json_safe(value: Any) -> Any:
    """A value as it should appear in an example: JSON-serialisable, dates as ISO text."""
    if value is None:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return json_safe(value.to_pydatetime())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return str(value)
