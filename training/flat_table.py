"""Flat tables: one row per account with a label (a CRM export, the IBM Telco file).

`read_table` reads CSV or Parquet. `prepare_flat_table` checks the id and
label columns, parses the label (0/1, Yes/No, True/False, Y/N), reads text
columns that hold only numbers and blanks as numbers (reporting every blank
it turned into a missing value), keeps other text columns as categories, and
leaves out columns that look like identifiers (distinct on almost every row).
Nothing is dropped silently: every decision is listed in `TableReport`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

TRUE_LABELS = frozenset({"1", "1.0", "yes", "y", "true", "t", "churned", "positive"})
FALSE_LABELS = frozenset({"0", "0.0", "no", "n", "false", "f", "retained", "negative"})
# A text column whose distinct values cover more than this share of rows is an identifier.
IDENTIFIER_DISTINCT_SHARE = 0.9


class TableError(ValueError):
    """A flat table cannot be used as given (the message names column and rows)."""


@dataclass(frozen=True)
class ColumnNote:
    column: str
    action: str
    detail: str


@dataclass
class TableReport:
    path: str
    rows: int
    notes: list[ColumnNote] = field(default_factory=list)

    def add(self, column: str, action: str, detail: str) -> None:
        self.notes.append(ColumnNote(column, action, detail))


@dataclass(frozen=True)
class FlatTable:
    ids: pd.Series
    X: pd.DataFrame
    y: np.ndarray | None
    report: TableReport

    @property
    def feature_set_version(self) -> str:
        """A short hash of the feature columns and their kinds (changes when the layout does)."""
        layout = ";".join(f"{c}:{'cat' if _is_text(self.X[c]) else 'num'}" for c in self.X.columns)
        return hashlib.sha256(layout.encode()).hexdigest()[:12]


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (any delimiter pandas sniffs with the default comma) or Parquet file as a frame."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix in {".csv", ".txt", ".tsv"}:
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (ValueError, OSError) as exc:
        raise TableError(f"cannot read {path}: {exc}") from exc
    raise TableError(f"unsupported table format {suffix!r} for {path}: use .csv or .parquet")


def _is_text(series: pd.Series) -> bool:
    return not pd.api.types.is_bool_dtype(series.dtype) and (
        pd.api.types.is_object_dtype(series.dtype)
        or pd.api.types.is_string_dtype(series.dtype)
        or isinstance(series.dtype, pd.CategoricalDtype)
    )


def _rows(index: pd.Index, limit: int = 5) -> str:
    """Row numbers as in the file (header = line 1, first data row = 2)."""
    shown = [str(int(i) + 2) if isinstance(i, int | np.integer) else str(i) for i in index[:limit]]
    more = f" (+{len(index) - limit} more)" if len(index) > limit else ""
    return ", ".join(shown) + more


def parse_labels(values: pd.Series, column: str) -> np.ndarray:
    """0/1 labels from 0/1, Yes/No, True/False, Y/N (case and spaces ignored)."""
    text = values.astype("string").str.strip().str.lower()
    missing = text.isna() | (text == "")
    if missing.any():
        raise TableError(
            f"label column {column!r} is empty on {int(missing.sum())} row(s): "
            f"file lines {_rows(values.index[missing])}"
        )
    positive = text.isin(TRUE_LABELS)
    negative = text.isin(FALSE_LABELS)
    unknown = ~(positive | negative)
    if unknown.any():
        examples = sorted(set(values[unknown].astype(str)))[:5]
        raise TableError(
            f"label column {column!r} has values that are not 0/1, Yes/No or True/False: "
            f"{examples} at file lines {_rows(values.index[unknown])}"
        )
    labels = positive.to_numpy(dtype=np.int64)
    if labels.min() == labels.max():
        raise TableError(f"label column {column!r} holds a single class; both are needed")
    return labels


def _numeric_text(series: pd.Series) -> tuple[pd.Series, pd.Index] | None:
    """The column as numbers when every non-blank value is a number; and the blank rows."""
    text = series.astype("string").str.strip()
    blank = text.isna() | (text == "")
    converted = pd.to_numeric(text.where(~blank), errors="coerce")
    if (converted.isna() & ~blank).any() or blank.all():
        return None
    newly_missing = series.index[blank & series.notna()]
    return converted.astype("float64"), newly_missing


def prepare_flat_table(
    frame: pd.DataFrame,
    id_col: str,
    label_col: str | None,
    path: str = "<frame>",
    feature_columns: list[str] | None = None,
) -> FlatTable:
    """Split a flat table into ids, features and labels, with a report of what was done.

    `feature_columns` (used when scoring) restricts the features to those
    columns; otherwise every column but the id and label is a candidate.
    """
    frame = frame.reset_index(drop=True)
    report = TableReport(path=path, rows=len(frame))
    available = [str(c) for c in frame.columns]
    frame.columns = available
    for role, column in (("id", id_col), ("label", label_col)):
        if column is not None and column not in available:
            raise TableError(
                f"{role} column {column!r} not in {path}; columns are: {', '.join(available)}"
            )
    if frame.empty:
        raise TableError(f"{path} has no rows")
    ids = frame[id_col]
    if ids.isna().any():
        raise TableError(
            f"id column {id_col!r} is empty at file lines {_rows(frame.index[ids.isna()])}"
        )
    ids = ids.astype("string").str.strip().astype("str")
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        raise TableError(
            f"id column {id_col!r} repeats {int(ids[duplicated].nunique())} id(s), e.g. "
            f"{ids[duplicated].iloc[0]!r} at file lines {_rows(frame.index[duplicated])}; "
            "a flat table needs one row per account"
        )
    y = parse_labels(frame[label_col], label_col) if label_col is not None else None

    candidates = feature_columns or [c for c in available if c not in {id_col, label_col}]
    features: dict[str, pd.Series] = {}
    for column in candidates:
        if column not in frame.columns:
            report.add(column, "missing", "absent from the table; scored as missing")
            continue
        series = frame[column]
        if not _is_text(series):
            features[column] = (
                series.astype("float64") if pd.api.types.is_bool_dtype(series.dtype) else series
            )
            continue
        numeric = _numeric_text(series)
        if numeric is not None:
            values, blanks = numeric
            features[column] = values
            if len(blanks):
                report.add(
                    column,
                    "coerced",
                    f"numbers stored as text; {len(blanks)} blank value(s) read as missing "
                    f"(file lines {_rows(blanks)})",
                )
            else:
                report.add(column, "coerced", "numbers stored as text, read as numbers")
            continue
        distinct = series.nunique(dropna=True)
        if feature_columns is None and distinct > IDENTIFIER_DISTINCT_SHARE * len(series) > 20:
            report.add(
                column,
                "ignored",
                f"{distinct} distinct values in {len(series)} rows: looks like an identifier",
            )
            continue
        text = series.astype("string").str.strip()
        features[column] = text.where(text != "")
    if not features:
        raise TableError(f"{path} has no feature columns besides {id_col!r} and {label_col!r}")
    X = pd.DataFrame(features, index=frame.index)
    return FlatTable(ids=ids.rename("account_id"), X=X, y=y, report=report)
