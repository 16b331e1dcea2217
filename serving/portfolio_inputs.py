"""Checks on the frames the portfolio layer reads, with errors that name the culprit.

The portfolio functions take frames built by the nightly job or the service: the
scores (one row per scored account with its attributes), the contract tables and
the ARR history. Bad input raises `PortfolioInputError` naming the frame, the column
and example account ids; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from serving.settings import SENIORITIES

SCORE_COLUMNS: tuple[str, ...] = ("account_id", "p_churn", "p_upsell", "arr")
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "segment",
    "industry",
    "region",
    "owner_id",
    "parent_account_id",
    "employees",
    "is_target",
)
OPTIONAL_SCORE_COLUMNS: tuple[str, ...] = ("days_to_renewal", "open_expansion_pipeline")
_EXAMPLES = 5


class PortfolioInputError(ValueError):
    """A frame given to the portfolio layer breaks its contract."""


def require_columns(frame: pd.DataFrame, table: str, columns: Iterable[str]) -> None:
    """Raise naming `table` and every missing column."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PortfolioInputError(
            f"{table}: missing column(s) {missing}; it has {list(frame.columns)}"
        )


def _examples(frame: pd.DataFrame, mask: pd.Series, id_column: str) -> list[str]:
    ids = frame.loc[mask, id_column].head(_EXAMPLES)
    return [str(v) for v in ids]


def _numeric(frame: pd.DataFrame, table: str, column: str, id_column: str) -> pd.Series:
    converted = pd.to_numeric(frame[column], errors="coerce")
    bad = converted.isna() & frame[column].notna()
    if bad.any():
        raise PortfolioInputError(
            f"{table}: column {column!r} is not numeric for {id_column} "
            f"{_examples(frame, bad, id_column)}"
        )
    return converted.astype("float64")


def _unique_ids(frame: pd.DataFrame, table: str, id_column: str) -> None:
    missing = frame[id_column].isna()
    if missing.any():
        rows = list(frame.index[missing][:_EXAMPLES])
        raise PortfolioInputError(f"{table}: {id_column} is empty in rows {rows}")
    duplicated = frame[id_column].duplicated(keep=False)
    if duplicated.any():
        raise PortfolioInputError(
            f"{table}: {id_column} is not unique; repeated: "
            f"{sorted(set(_examples(frame, duplicated, id_column)))}"
        )


def check_scores(scores: pd.DataFrame, table: str = "scores") -> pd.DataFrame:
    """A checked copy of `scores` with every attribute column present (NA when unknown).

    Requires account_id (unique), p_churn and p_upsell in [0, 1] and arr >= 0, all finite.
    """
    require_columns(scores, table, SCORE_COLUMNS)
    frame = scores.copy()
    _unique_ids(frame, table, "account_id")
    frame["account_id"] = frame["account_id"].astype("string")
    for column in ("p_churn", "p_upsell", "arr"):
        values = _numeric(frame, table, column, "account_id")
        missing = values.isna() | ~np.isfinite(values.fillna(0.0))
        if missing.any():
            raise PortfolioInputError(
                f"{table}: column {column!r} is empty or infinite for account_id "
                f"{_examples(frame, missing, 'account_id')}"
            )
        frame[column] = values
    for column in ("p_churn", "p_upsell"):
        outside = (frame[column] < 0) | (frame[column] > 1)
        if outside.any():
            raise PortfolioInputError(
                f"{table}: column {column!r} is outside [0, 1] for account_id "
                f"{_examples(frame, outside, 'account_id')}"
            )
    negative = frame["arr"] < 0
    if negative.any():
        raise PortfolioInputError(
            f"{table}: column 'arr' is negative for account_id "
            f"{_examples(frame, negative, 'account_id')}"
        )
    for column in ATTRIBUTE_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    for column in ("segment", "industry", "region", "owner_id", "parent_account_id"):
        frame[column] = frame[column].astype("string")
    frame["employees"] = _numeric(frame, table, "employees", "account_id")
    frame["is_target"] = frame["is_target"].astype("boolean")
    for column in OPTIONAL_SCORE_COLUMNS:
        if column in frame.columns:
            frame[column] = _numeric(frame, table, column, "account_id")
    return frame


def check_accounts(accounts: pd.DataFrame, table: str = "accounts") -> pd.DataFrame:
    """A checked copy of the contract accounts table with the columns the portfolio reads."""
    require_columns(accounts, table, ["account_id"])
    frame = accounts.copy()
    _unique_ids(frame, table, "account_id")
    frame["account_id"] = frame["account_id"].astype("string")
    for column in ("segment", "industry", "region", "owner_id", "parent_account_id"):
        frame[column] = (
            frame[column].astype("string")
            if column in frame.columns
            else pd.Series(pd.NA, index=frame.index, dtype="string")
        )
    frame["is_target"] = (
        frame["is_target"].astype("boolean")
        if "is_target" in frame.columns
        else pd.Series(pd.NA, index=frame.index, dtype="boolean")
    )
    return frame


def check_arr_history(arr_history: pd.DataFrame, table: str = "arr_history") -> pd.DataFrame:
    """A checked copy of [account_id, arr_start, arr_end]: unique ids, amounts >= 0 (NA -> 0)."""
    require_columns(arr_history, table, ["account_id", "arr_start", "arr_end"])
    frame = arr_history.copy()
    _unique_ids(frame, table, "account_id")
    frame["account_id"] = frame["account_id"].astype("string")
    for column in ("arr_start", "arr_end"):
        values = _numeric(frame, table, column, "account_id").fillna(0.0)
        bad = (values < 0) | ~np.isfinite(values)
        if bad.any():
            raise PortfolioInputError(
                f"{table}: column {column!r} is negative or infinite for account_id "
                f"{_examples(frame, bad, 'account_id')}"
            )
        frame[column] = values
    return frame


def check_account_managers(managers: pd.DataFrame, table: str = "account_managers") -> pd.DataFrame:
    """A checked copy of the account managers: unique owner_id, known seniority, capacities >= 0.

    Seniority is compared case-insensitively; a missing capacity means "no limit" for it.
    """
    require_columns(managers, table, ["owner_id", "seniority"])
    frame = managers.copy()
    _unique_ids(frame, table, "owner_id")
    frame["owner_id"] = frame["owner_id"].astype("string")
    seniority = frame["seniority"].astype("string").str.strip().str.lower()
    unknown = ~seniority.isin(SENIORITIES) | seniority.isna()
    if unknown.any():
        raise PortfolioInputError(
            f"{table}: column 'seniority' must be one of {list(SENIORITIES)}; owner_id "
            f"{_examples(frame, unknown, 'owner_id')} have "
            f"{sorted({str(v) for v in frame.loc[unknown, 'seniority']})}"
        )
    frame["seniority"] = seniority
    for column in ("capacity_accounts", "capacity_hours"):
        if column not in frame.columns:
            frame[column] = np.nan
        values = _numeric(frame, table, column, "owner_id")
        bad = (values < 0) | (values.notna() & ~np.isfinite(values.fillna(0.0)))
        if bad.any():
            raise PortfolioInputError(
                f"{table}: column {column!r} is negative or infinite for owner_id "
                f"{_examples(frame, bad, 'owner_id')}"
            )
        frame[column] = values
    if "name" not in frame.columns:
        frame["name"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    return frame


def group_labels(values: pd.Series, unknown: str) -> pd.Series:
    """Values as plain labels for grouping, with missing values named `unknown`."""
    return values.astype("string").fillna(unknown).astype(object)
