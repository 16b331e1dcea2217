"""Priority per account and coverage tiers.

priority = value at stake x fit factor x timing factor, where

- value at stake = p_churn x arr x saveable_share + expected_expansion
  (the ARR attention can save plus the expansion it can win, in currency);
- fit factor = (1 - fit_weight) + fit_weight x icp_fit;
- timing factor = 1 + renewal_weight x (1 - days_to_renewal / renewal_window_days) when
  the renewal is within the window (overdue renewals count as day 0), 1 otherwise.

Tiers rank accounts by priority: the top `strategic_share` are strategic, the next
`high_touch_share` high-touch, the rest tech-touch; then a tech-touch account whose
expected_expansion or p_upsell reaches its promotion threshold is promoted to high-touch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from serving.settings import PrioritySettings, TierSettings, ValueSettings


def value_at_stake(scores: pd.DataFrame, settings: ValueSettings) -> pd.Series:
    """p_churn x arr x saveable_share + expected_expansion (scores hold expected_expansion)."""
    saveable = scores["p_churn"] * scores["arr"] * settings.saveable_share
    return (saveable + scores["expected_expansion"]).rename("value_at_stake")


def timing_factor(scores: pd.DataFrame, settings: PrioritySettings) -> pd.Series:
    """1 + renewal_weight x (1 - days / window) for renewals within the window, else 1."""
    if "days_to_renewal" not in scores.columns:
        return pd.Series(1.0, index=scores.index, name="timing_factor")
    days = pd.to_numeric(scores["days_to_renewal"]).astype("float64")
    window = float(settings.renewal_window_days)
    closeness = (1.0 - days.clip(lower=0.0) / window).where(days <= window, 0.0).fillna(0.0)
    return (1.0 + settings.renewal_weight * closeness).rename("timing_factor")


def priority(scores: pd.DataFrame, value: ValueSettings, settings: PrioritySettings) -> pd.Series:
    """Priority of each account (currency units); scores hold expected_expansion and icp_fit."""
    fit = (1.0 - settings.fit_weight) + settings.fit_weight * scores["icp_fit"].fillna(0.0)
    result = value_at_stake(scores, value) * fit * timing_factor(scores, settings)
    return result.round(6).rename("priority")


def tier_sizes(accounts: int, settings: TierSettings) -> tuple[int, int]:
    """How many accounts are strategic and high-touch before promotions: each share of the
    account count rounded half up (5% of 10 accounts = 0.5 -> 1)."""
    strategic = math.floor(settings.strategic_share * accounts + 0.5)
    high_touch = math.floor((settings.strategic_share + settings.high_touch_share) * accounts + 0.5)
    return strategic, max(0, min(accounts, high_touch) - strategic)


def assign_tiers(scores: pd.DataFrame, settings: TierSettings) -> pd.DataFrame:
    """`tier` and `tier_reason` of every account; scores hold priority and expected_expansion.

    Ranking is by priority, then ARR, then account_id (deterministic). Promotion: a
    tech-touch account with expected_expansion >= promotion_expected_expansion or
    p_upsell >= promotion_p_upsell becomes high-touch.
    """
    order = (
        pd.DataFrame(
            {
                "priority": scores["priority"].to_numpy(),
                "arr": scores["arr"].to_numpy(),
                "account_id": scores["account_id"].astype(str).to_numpy(),
                "position": np.arange(len(scores)),
            }
        )
        .sort_values(["priority", "arr", "account_id"], ascending=[False, False, True])["position"]
        .to_numpy()
    )
    strategic, high_touch = tier_sizes(len(scores), settings)
    rank = np.empty(len(scores), dtype=int)
    rank[order] = np.arange(len(scores))
    tier = np.where(
        rank < strategic,
        "strategic",
        np.where(rank < strategic + high_touch, "high-touch", "tech-touch"),
    ).astype(object)
    reason = np.where(
        rank < strategic,
        f"priority in the top {strategic} (strategic share {settings.strategic_share:g})",
        np.where(
            rank < strategic + high_touch,
            f"priority in the next {high_touch} (high-touch share {settings.high_touch_share:g})",
            "priority below the high-touch cut",
        ),
    ).astype(object)
    by_expansion = (
        scores["expected_expansion"] >= settings.promotion_expected_expansion
    ).to_numpy()
    by_upsell = (scores["p_upsell"] >= settings.promotion_p_upsell).to_numpy()
    promoted = (tier == "tech-touch") & (by_expansion | by_upsell)
    tier[promoted] = "high-touch"
    reason[promoted & by_expansion] = (
        f"promoted: expected_expansion >= {settings.promotion_expected_expansion:g}"
    )
    reason[promoted & ~by_expansion] = f"promoted: p_upsell >= {settings.promotion_p_upsell:g}"
    return pd.DataFrame(
        {
            "tier": pd.Series(tier, index=scores.index, dtype="string"),
            "tier_reason": pd.Series(reason, index=scores.index, dtype="string"),
        }
    )
