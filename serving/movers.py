"""Movers: the accounts whose scores changed most since the previous run, and why.

For each mover the features that changed most between the two feature snapshots are
listed, ranked by the size of the change in units of the feature's spread across the
current portfolio (standard deviation; 1 when the feature does not vary), so a change
of 30 logins and a change of 0.2 in a ratio can be compared. Only numeric and boolean
features are compared; a value missing on either side is not a change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from serving.settings import MoverSettings

_DECIMALS = 9
_KEYS = ("account_id", "as_of")


def score_changes(scores: pd.DataFrame, previous_scores: pd.DataFrame) -> pd.DataFrame:
    """Accounts scored in both runs with their previous and current p_churn and p_upsell."""
    current = scores[["account_id", "p_churn", "p_upsell"]].astype({"account_id": str})
    previous = previous_scores[["account_id", "p_churn", "p_upsell"]].astype({"account_id": str})
    joined = current.merge(previous, on="account_id", how="inner", suffixes=("", "_previous"))
    joined["p_churn_change"] = joined["p_churn"] - joined["p_churn_previous"]
    joined["p_upsell_change"] = joined["p_upsell"] - joined["p_upsell_previous"]
    return joined


def _numeric_features(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"account_id": str}).drop_duplicates("account_id").set_index("account_id")
    columns = {}
    for name in frame.columns:
        if name in _KEYS:
            continue
        values = frame[name]
        if pd.api.types.is_bool_dtype(values.dtype):
            columns[name] = values.astype("float64")
        elif pd.api.types.is_numeric_dtype(values.dtype):
            columns[name] = pd.to_numeric(values).astype("float64")
    return pd.DataFrame(columns, index=frame.index)


def feature_changes(
    current_features: pd.DataFrame,
    previous_features: pd.DataFrame,
    account_ids: list[str],
    top: int,
) -> dict[str, list[dict[str, Any]]]:
    """Per account id, its `top` largest feature changes (feature, previous, current, change,
    standardised_change), largest |standardised_change| first, ties by feature name."""
    current = _numeric_features(current_features)
    previous = _numeric_features(previous_features)
    shared = [c for c in current.columns if c in previous.columns]
    spread = current[shared].std(ddof=0).replace(0.0, np.nan).fillna(1.0)
    result: dict[str, list[dict[str, Any]]] = {}
    for account_id in account_ids:
        if account_id not in current.index or account_id not in previous.index:
            result[account_id] = []
            continue
        now, before = current.loc[account_id, shared], previous.loc[account_id, shared]
        change = (now - before).dropna()
        change = change[change != 0]
        standardised = change / spread[change.index]
        ranked = (
            pd.DataFrame({"feature": standardised.index, "size": standardised.abs().to_numpy()})
            .sort_values(["size", "feature"], ascending=[False, True])
            .head(top)
        )
        result[account_id] = [
            {
                "feature": feature,
                "previous": round(float(before[feature]), _DECIMALS),
                "current": round(float(now[feature]), _DECIMALS),
                "change": round(float(change[feature]), _DECIMALS),
                "standardised_change": round(float(standardised[feature]), _DECIMALS),
            }
            for feature in ranked["feature"]
        ]
    return result


def _ranked(changes: pd.DataFrame, column: str, settings: MoverSettings) -> pd.DataFrame:
    size = changes[column].abs().round(_DECIMALS)
    movers = changes.assign(size=size)[size >= settings.min_change]
    movers = movers[movers["size"] > 0]
    return movers.sort_values(["size", "account_id"], ascending=[False, True]).head(settings.count)


def find_movers(
    scores: pd.DataFrame,
    previous_scores: pd.DataFrame | None,
    settings: MoverSettings,
    current_features: pd.DataFrame | None = None,
    previous_features: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The largest changes of p_churn and of p_upsell since the previous run.

    Returns {available, reason, previous_as_of, accounts_compared, new_accounts,
    departed_accounts, churn: [...], upsell: [...]}; each mover is {account_id, previous,
    current, change, features} for the list's score (p_churn or p_upsell), `features`
    being the largest feature changes (empty when no feature snapshots are given).
    """
    if previous_scores is None:
        return {
            "available": False,
            "reason": "no previous run",
            "previous_as_of": None,
            "accounts_compared": 0,
            "new_accounts": 0,
            "departed_accounts": 0,
            "churn": [],
            "upsell": [],
        }
    changes = score_changes(scores, previous_scores)
    current_ids = set(scores["account_id"].astype(str))
    previous_ids = set(previous_scores["account_id"].astype(str))
    previous_as_of = (
        pd.to_datetime(previous_scores["as_of"]).max()
        if "as_of" in previous_scores.columns and len(previous_scores)
        else None
    )
    lists = {
        "churn": _ranked(changes, "p_churn_change", settings),
        "upsell": _ranked(changes, "p_upsell_change", settings),
    }
    ids = sorted({a for frame in lists.values() for a in frame["account_id"]})
    reasons = (
        feature_changes(current_features, previous_features, ids, settings.features_per_account)
        if current_features is not None and previous_features is not None
        else {a: [] for a in ids}
    )

    def entry(row: Any, target: str) -> dict[str, Any]:
        return {
            "account_id": row.account_id,
            "previous": round(float(getattr(row, f"p_{target}_previous")), _DECIMALS),
            "current": round(float(getattr(row, f"p_{target}")), _DECIMALS),
            "change": round(float(getattr(row, f"p_{target}_change")), _DECIMALS),
            "features": reasons[row.account_id],
        }

    return {
        "available": True,
        "reason": None,
        "previous_as_of": None if previous_as_of is None else previous_as_of.date().isoformat(),
        "accounts_compared": len(changes),
        "new_accounts": len(current_ids - previous_ids),
        "departed_accounts": len(previous_ids - current_ids),
        "churn": [entry(row, "churn") for row in lists["churn"].itertuples(index=False)],
        "upsell": [entry(row, "upsell") for row in lists["upsell"].itertuples(index=False)],
    }
