"""Priority and tiers on hand-built accounts, including every threshold at its boundary."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from serving.prioritisation import assign_tiers, priority, tier_sizes, timing_factor, value_at_stake
from serving.settings import PrioritySettings, TierSettings, ValueSettings


def test_priority_by_hand():
    scores = pd.DataFrame(
        {
            "p_churn": [0.2],
            "arr": [1000.0],
            "expected_expansion": [40.0],
            "icp_fit": [0.5],
            "days_to_renewal": [45.0],
        }
    )
    value = ValueSettings(saveable_share=0.3)
    settings = PrioritySettings(fit_weight=0.2, renewal_window_days=90, renewal_weight=0.5)
    # at stake: 0.2 x 1000 x 0.3 + 40 = 100; fit 0.8 + 0.2 x 0.5 = 0.9; timing 1 + 0.5 x 0.5
    assert value_at_stake(scores, value).tolist() == [100.0]
    assert priority(scores, value, settings).tolist() == [pytest.approx(100 * 0.9 * 1.25)]


def test_timing_factor_at_the_window_boundaries():
    scores = pd.DataFrame({"days_to_renewal": [0.0, 90.0, 91.0, -5.0, None, 30.0]})
    settings = PrioritySettings(renewal_window_days=90, renewal_weight=0.6)
    assert timing_factor(scores, settings).tolist() == pytest.approx([1.6, 1.0, 1.0, 1.6, 1.0, 1.4])


def test_timing_factor_without_renewal_dates_is_neutral():
    assert timing_factor(pd.DataFrame({"arr": [1.0, 2.0]}), PrioritySettings()).tolist() == [
        1.0,
        1.0,
    ]


@pytest.mark.parametrize(
    ("accounts", "expected"),
    [(0, (0, 0)), (1, (0, 0)), (10, (1, 2)), (19, (1, 4)), (100, (5, 20))],
)
def test_tier_sizes_round_half_up(accounts, expected):
    # 10 accounts: 5% = 0.5 -> 1 strategic; 25% = 2.5 -> 3 - 1 = 2 high-touch
    assert (
        tier_sizes(accounts, TierSettings(strategic_share=0.05, high_touch_share=0.20)) == expected
    )


def tiered_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(10)],
            "priority": [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
            "arr": [1.0] * 10,
            "expected_expansion": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 99.99, 0.0, 0.0],
            "p_upsell": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.6999],
        }
    )


def test_tiers_by_rank_and_promotion_exactly_at_the_thresholds():
    settings = TierSettings(
        strategic_share=0.1,
        high_touch_share=0.2,
        promotion_expected_expansion=100.0,
        promotion_p_upsell=0.7,
    )
    tiers = assign_tiers(tiered_scores(), settings)
    assert tiers["tier"].tolist() == [
        "strategic",
        "high-touch",
        "high-touch",
        "tech-touch",
        "tech-touch",
        "tech-touch",
        "high-touch",  # expected_expansion = 100 reaches the threshold
        "tech-touch",  # 99.99 does not
        "high-touch",  # p_upsell = 0.7 reaches the threshold
        "tech-touch",
    ]
    assert tiers["tier_reason"].iloc[6] == "promoted: expected_expansion >= 100"
    assert tiers["tier_reason"].iloc[8] == "promoted: p_upsell >= 0.7"


def test_ties_rank_by_arr_then_account_id():
    scores = pd.DataFrame(
        {
            "account_id": ["B", "A", "C"],
            "priority": [5.0, 5.0, 5.0],
            "arr": [1.0, 1.0, 2.0],
            "expected_expansion": [0.0] * 3,
            "p_upsell": [0.0] * 3,
        }
    )
    settings = TierSettings(strategic_share=0.34, high_touch_share=0.33)
    # C has the most ARR; A before B by id
    assert assign_tiers(scores, settings)["tier"].tolist() == [
        "tech-touch",
        "high-touch",
        "strategic",
    ]


def test_tier_shares_cannot_exceed_the_portfolio():
    with pytest.raises(ValidationError, match="at most 1"):
        TierSettings(strategic_share=0.6, high_touch_share=0.5)
