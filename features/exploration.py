"""Summaries for exploring a portfolio before modelling it (notebooks/01_explore_portfolio).

Pure functions over contract tables and training panels (frames in, frames
out), so what a notebook shows is computed by tested code:

- `table_coverage`: rows, accounts and the date range of every given table;
- `arr_over_time`: active accounts and total ARR at each date;
- `label_rates`: accounts, ARR and churn / upsell base rates per group of
  panel rows (per monthly snapshot by default, or per segment, or both);
- `feature_summary`: count, missing share and quantiles of the numeric
  features, optionally per group (feature distributions by segment);
- `outcome_correlations`: the rank correlation of every numeric feature with
  each label.

The panel is `features.build_training_panel`'s: account_id, as_of, the
features, churn, upsell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.build import FEATURE_META_COLUMNS, RECORDED_DATES, AsOf, arr_at
from features.contract import CONTRACT, Tables
from features.labels import LABEL_COLUMNS

ARR_COLUMN = "arr"
# Quantiles `feature_summary` reports, by column name.
SUMMARY_QUANTILES: dict[str, float] = {"p10": 0.10, "p50": 0.50, "p90": 0.90}


def table_coverage(tables: Tables) -> pd.DataFrame:
    """One row per given contract table: rows, distinct accounts and the dates it covers.

    Columns: table, rows, accounts, date_column, first_date, last_date. The
    date column is the one the data period is measured on (the contract's
    event date; invoices by `paid_at`); tables without one (accounts) have no
    dates. Tables follow the contract's order.
    """
    rows = []
    for name in [table for table in CONTRACT if table in tables]:
        frame = tables[name]
        column = RECORDED_DATES.get(name, CONTRACT[name].event_date)
        dates = (
            pd.to_datetime(frame[column], errors="coerce")
            if column is not None and column in frame.columns
            else None
        )
        rows.append(
            {
                "table": name,
                "rows": len(frame),
                "accounts": int(frame["account_id"].nunique()) if "account_id" in frame else 0,
                "date_column": column if dates is not None else None,
                "first_date": dates.min() if dates is not None else pd.NaT,
                "last_date": dates.max() if dates is not None else pd.NaT,
            }
        )
    return pd.DataFrame(
        rows, columns=["table", "rows", "accounts", "date_column", "first_date", "last_date"]
    ).astype({"first_date": "datetime64[ns]", "last_date": "datetime64[ns]"})


def arr_over_time(tables: Tables, dates: Sequence[AsOf]) -> pd.DataFrame:
    """Active accounts (ARR > 0) and total ARR at each date: as_of, active_accounts, arr.

    ARR is `features.arr_at`'s (subscriptions active at the date, or orders
    over the 365 days up to it); a date without active accounts has zeros.
    """
    per_account = arr_at(tables, dates)
    days = pd.DatetimeIndex(sorted({pd.Timestamp(day).normalize() for day in dates}), name="as_of")
    totals = per_account.groupby("as_of").agg(
        active_accounts=("account_id", "size"), arr=("arr", "sum")
    )
    totals = totals.reindex(days.as_unit("ns"), fill_value=0)
    return totals.reset_index().astype({"active_accounts": "int64", "arr": "float64"})


def label_rates(panel: pd.DataFrame, by: str | Sequence[str] = "as_of") -> pd.DataFrame:
    """Base rates per group of panel rows (per snapshot by default).

    Columns: the `by` columns, accounts (rows), arr (total ARR at the
    snapshot), churn_rate and upsell_rate (share of accounts), churned_arr
    (ARR of the accounts that churned) and churned_arr_share (churned_arr /
    arr, the ARR-weighted churn rate). A missing group value (e.g. no
    segment) is its own group, labelled "(missing)" for text columns.
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*keys, *LABEL_COLUMNS, ARR_COLUMN] if c not in panel.columns]
    if missing:
        raise KeyError(f"the panel has no {', '.join(missing)} column(s)")
    frame = panel[[*keys, *LABEL_COLUMNS, ARR_COLUMN]].copy()
    for key in keys:
        if not pd.api.types.is_datetime64_any_dtype(
            frame[key]
        ) and not pd.api.types.is_numeric_dtype(frame[key]):
            frame[key] = frame[key].astype("str").where(frame[key].notna(), "(missing)")
    frame["churned_arr"] = frame[ARR_COLUMN].fillna(0.0) * frame["churn"]
    grouped = frame.groupby(keys, dropna=False, sort=True)
    out = grouped.agg(
        accounts=("churn", "size"),
        arr=(ARR_COLUMN, "sum"),
        churn_rate=("churn", "mean"),
        upsell_rate=("upsell", "mean"),
        churned_arr=("churned_arr", "sum"),
    ).reset_index()
    out["churned_arr_share"] = (out["churned_arr"] / out["arr"]).where(out["arr"] > 0)
    return out.astype({"accounts": "int64"})


def numeric_features(frame: pd.DataFrame) -> list[str]:
    """The numeric feature columns of a feature frame or panel (not ids, dates or labels)."""
    excluded = set(FEATURE_META_COLUMNS) | set(LABEL_COLUMNS)
    return [
        column
        for column in frame.columns
        if column not in excluded
        and pd.api.types.is_numeric_dtype(frame[column])
        and not pd.api.types.is_bool_dtype(frame[column])
    ]


def feature_summary(
    frame: pd.DataFrame,
    by: str | None = None,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Distribution of numeric features, overall or per group of `by`.

    One row per (group, feature): rows, missing_share, mean, p10, p50, p90
    (over the known values; NaN when none is known). Features default to every
    numeric feature column.
    """
    names = list(features) if features is not None else numeric_features(frame)
    absent = [n for n in [*names, *([by] if by else [])] if n not in frame.columns]
    if absent:
        raise KeyError(f"the frame has no {', '.join(absent)} column(s)")
    if by is None:
        groups = [(None, frame)]
    else:
        labels = frame[by].astype("str").where(frame[by].notna(), "(missing)")
        groups = list(frame.groupby(labels, sort=True))
    rows = []
    for group, part in groups:
        for name in names:
            values = part[name].astype("float64")
            known = values.dropna()
            row = {} if by is None else {by: group}
            row.update(
                {
                    "feature": name,
                    "rows": len(values),
                    "missing_share": float(values.isna().mean()) if len(values) else np.nan,
                    "mean": float(known.mean()) if len(known) else np.nan,
                }
            )
            for label, q in SUMMARY_QUANTILES.items():
                row[label] = float(known.quantile(q)) if len(known) else np.nan
            rows.append(row)
    columns = [*([by] if by else []), "feature", "rows", "missing_share", "mean"]
    return pd.DataFrame(rows, columns=[*columns, *SUMMARY_QUANTILES])


def outcome_correlations(
    panel: pd.DataFrame,
    method: str = "spearman",
    labels: Sequence[str] = LABEL_COLUMNS,
    min_known: int = 30,
) -> pd.DataFrame:
    """Correlation of each numeric feature with each label, strongest first.

    One row per feature: a column per label (the `method` correlation over the
    rows where the feature is known; NaN when fewer than `min_known` are, or
    when the feature or the label is constant there) and known_share. Rows are
    sorted by the largest absolute correlation over the labels.
    """
    absent = [label for label in labels if label not in panel.columns]
    if absent:
        raise KeyError(f"the panel has no {', '.join(absent)} column(s)")
    rows = []
    for name in numeric_features(panel):
        values = panel[name].astype("float64")
        known = values.notna()
        row: dict[str, object] = {"feature": name, "known_share": float(known.mean())}
        for label in labels:
            x, y = values[known], panel.loc[known, label].astype("float64")
            usable = known.sum() >= min_known and x.nunique() > 1 and y.nunique() > 1
            row[label] = float(x.corr(y, method=method)) if usable else np.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=["feature", *labels, "known_share"])
    strength = out[list(labels)].abs().max(axis=1, skipna=True)
    order = strength.fillna(-1.0).sort_values(ascending=False, kind="stable").index
    return out.loc[order].reset_index(drop=True)


__all__ = [
    "SUMMARY_QUANTILES",
    "arr_over_time",
    "feature_summary",
    "label_rates",
    "numeric_features",
    "outcome_correlations",
    "table_coverage",
]
