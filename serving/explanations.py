"""Reasons as tables: for reading them in a notebook and comparing model sets.

`serving.scoring.score_accounts` returns each account's reasons as a list of
`{model, rank, feature, value, contribution, text}`. `reasons_long` lays
them out one row per reason; `compare_reasons` scores the same accounts with
several (churn, upsell) model pairs, e.g. a challenger and the champions, and
puts their reasons side by side.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from serving.scoring import score_accounts
from training.registry import Champion

REASON_FIELDS: tuple[str, ...] = ("model", "rank", "feature", "value", "contribution", "text")
SIDE_BY_SIDE_FIELDS: tuple[str, ...] = ("text", "contribution")


def reasons_long(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per reason: account_id, the model's probability (p), then the reason fields.

    `scores` is a `score_accounts` frame; `p` is p_churn for churn reasons and
    p_upsell for upsell reasons. Accounts without reasons have no rows.
    """
    rows = []
    for account_id, p_churn, p_upsell, reasons in zip(
        scores["account_id"], scores["p_churn"], scores["p_upsell"], scores["reasons"], strict=True
    ):
        probability = {"churn": p_churn, "upsell": p_upsell}
        for reason in reasons:
            rows.append(
                {
                    "account_id": account_id,
                    "p": float(probability.get(str(reason["model"]), float("nan"))),
                    **{field: reason[field] for field in REASON_FIELDS},
                }
            )
    frame = pd.DataFrame(rows, columns=["account_id", "p", *REASON_FIELDS])
    return frame.astype({"account_id": "str", "rank": "int64", "contribution": "float64"})


def compare_reasons(
    features: pd.DataFrame,
    model_sets: Mapping[str, tuple[Champion, Champion]],
    top_k: int = 3,
) -> pd.DataFrame:
    """The top reasons of the same accounts under each (churn, upsell) model pair.

    Rows: (account_id, model, rank); columns: (set name, text / contribution)
    plus (set name, p) with that set's probability. A set that gives fewer
    reasons than another leaves the extra cells empty.
    """
    if not model_sets:
        raise ValueError("no model set to compare")
    parts = []
    for name, (churn, upsell) in model_sets.items():
        long = reasons_long(score_accounts(features, churn, upsell, top_k=top_k))
        parts.append(long.assign(model_set=name))
    combined = pd.concat(parts, ignore_index=True)
    wide = combined.pivot(
        index=["account_id", "model", "rank"],
        columns="model_set",
        values=["p", *SIDE_BY_SIDE_FIELDS],
    )
    wide = wide.swaplevel(0, 1, axis=1)
    ordered = [(name, field) for name in model_sets for field in ("p", *SIDE_BY_SIDE_FIELDS)]
    return wide.reindex(columns=pd.MultiIndex.from_tuples(ordered))


__all__ = ["REASON_FIELDS", "compare_reasons", "reasons_long"]
