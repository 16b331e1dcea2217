"""Value x risk x potential grid, ICP fit and campaign rules on hand-built accounts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from serving.portfolio_inputs import check_scores
from serving.segmentation import (
    IdealCustomerProfile,
    best_accounts,
    campaign_eligibility,
    employee_band,
    high_value_threshold,
    icp_fit,
    rule_matches,
    value_segment,
)
from serving.settings import CampaignRule, SegmentationSettings


def scores_frame(rows: list[dict]) -> pd.DataFrame:
    defaults = {"p_churn": 0.0, "p_upsell": 0.0, "arr": 0.0}
    return check_scores(
        pd.DataFrame([{**defaults, "account_id": f"A{i}", **row} for i, row in enumerate(rows)])
    )


def test_value_segment_grid_includes_every_boundary():
    settings = SegmentationSettings(
        high_value_arr=100.0, high_risk_p_churn=0.25, high_potential_p_upsell=0.30
    )
    scores = scores_frame(
        [
            {"arr": 100.0, "p_churn": 0.25, "p_upsell": 0.30},  # all three at their boundary
            {"arr": 99.99, "p_churn": 0.2499, "p_upsell": 0.30},
            {"arr": 100.0, "p_churn": 0.10, "p_upsell": 0.10},
            {"arr": 100.0, "p_churn": 0.10, "p_upsell": 0.50},
            {"arr": 50.0, "p_churn": 0.50, "p_upsell": 0.50},
            {"arr": 50.0, "p_churn": 0.50, "p_upsell": 0.10},
            {"arr": 50.0, "p_churn": 0.10, "p_upsell": 0.10},
            {"arr": 100.0, "p_churn": 0.90, "p_upsell": 0.0},
        ]
    )
    assert value_segment(scores, settings).tolist() == [
        "protect",
        "develop",
        "sustain",
        "expand",
        "rescue",
        "watch",
        "maintain",
        "protect",
    ]


def test_high_value_threshold_is_a_quantile_of_arr_unless_set():
    arr = pd.Series([10.0, 20.0, 30.0, 40.0, 50.0])
    assert high_value_threshold(arr, SegmentationSettings(high_value_quantile=0.8)) == 42.0
    assert high_value_threshold(arr, SegmentationSettings(high_value_arr=15.0)) == 15.0


def test_zero_arr_is_never_high_value():
    settings = SegmentationSettings(high_value_arr=0.0)
    scores = scores_frame([{"arr": 0.0}, {"arr": 1.0}])
    assert value_segment(scores, settings).tolist() == ["maintain", "sustain"]


def test_employee_bands():
    bands = employee_band(pd.Series([1, 49, 50, 249, 250, 4999, 5000, None]), (50, 250, 1000, 5000))
    assert bands.tolist()[:7] == [
        "0-49",
        "0-49",
        "50-249",
        "50-249",
        "250-999",
        "1000-4999",
        "5000+",
    ]
    assert pd.isna(bands.iloc[7])


def test_ideal_customer_profile_by_hand():
    X = pd.DataFrame({"segment": ["ent"] * 4 + ["smb"] * 4})
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    # no smoothing: best-rate ent 3/4, smb 1/4 -> ent is the best category, smb the worst
    raw = IdealCustomerProfile(smoothing=0.0).fit(X, y)
    assert raw.base_rate_ == 0.5
    assert raw.score_samples(X).tolist() == pytest.approx([1.0] * 4 + [0.0] * 4)
    # smoothing 2 towards the base rate 0.5: ent (3 + 1) / 6, smb (1 + 1) / 6
    smoothed = IdealCustomerProfile(smoothing=2.0).fit(X, y)
    assert smoothed.rates_["segment"] == pytest.approx({"ent": 4 / 6, "smb": 2 / 6})
    unseen = pd.DataFrame({"segment": ["mid", None]})
    # an unseen or missing category has the base rate, half-way between 2/6 and 4/6
    assert smoothed.score_samples(unseen).tolist() == pytest.approx([0.5, 0.5])
    assert smoothed.score_record({"segment": "ent"}) == pytest.approx(1.0)
    assert smoothed.score_record({"segment": None}) == pytest.approx(0.5)


def test_ideal_customer_profile_weights_attributes():
    X = pd.DataFrame({"segment": ["a", "a", "b", "b"], "region": ["n", "s", "n", "s"]})
    y = np.array([1, 1, 0, 0])
    model = IdealCustomerProfile(smoothing=0.0, weights={"segment": 3.0, "region": 1.0}).fit(X, y)
    # segment: a 1.0, b 0.0; region: n and s both 0.5, not discriminating -> 1.0
    assert model.score_samples(X).tolist() == pytest.approx([1.0, 1.0, 0.25, 0.25])


def test_ideal_customer_profile_follows_the_estimator_contract():
    model = IdealCustomerProfile(smoothing=1.0)
    assert model.get_params() == {"smoothing": 1.0, "weights": None}
    with pytest.raises(NotFittedError):
        model.score_samples(pd.DataFrame({"segment": ["a"]}))
    assert model.fit(pd.DataFrame({"segment": ["a"]}), [1]) is model


def test_best_accounts_are_the_top_share_by_expected_retained_arr():
    scores = scores_frame(
        [
            {"arr": 100.0, "p_churn": 0.5},  # retains 50
            {"arr": 80.0, "p_churn": 0.0},  # 80
            {"arr": 60.0, "p_churn": 0.0},  # 60
            {"arr": 200.0, "p_churn": 0.9},  # 20
        ]
    )
    best = best_accounts(scores, SegmentationSettings(icp_best_share=0.5))
    assert best.tolist() == [False, True, True, False]


def test_icp_fit_learns_from_the_scores_themselves():
    settings = SegmentationSettings(
        icp_best_share=0.5, icp_smoothing=0.0, icp_attributes=("segment",)
    )
    scores = scores_frame(
        [
            {"arr": 100.0, "segment": "ent"},
            {"arr": 90.0, "segment": "ent"},
            {"arr": 10.0, "segment": "smb"},
            {"arr": 5.0, "segment": "smb"},
        ]
    )
    assert icp_fit(scores, settings).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_campaign_rule_bounds_are_inclusive_below_exclusive():
    rule = CampaignRule(name="abm", at_least={"p_upsell": 0.3}, below={"p_churn": 0.25})
    scores = scores_frame(
        [
            {"p_upsell": 0.3, "p_churn": 0.2499},
            {"p_upsell": 0.2999, "p_churn": 0.0},
            {"p_upsell": 0.9, "p_churn": 0.25},
        ]
    )
    assert rule_matches(scores, rule).tolist() == [True, False, False]


def test_campaign_eligibility_columns_and_names_in_rule_order():
    scores = scores_frame(
        [{"p_upsell": 0.5, "p_churn": 0.3}, {"p_upsell": 0.5, "p_churn": 0.0}, {}]
    )
    scores["tier"] = ["tech-touch", "strategic", "tech-touch"]
    rules = (
        CampaignRule(name="grow", at_least={"p_upsell": 0.4}),
        CampaignRule(name="save", at_least={"p_churn": 0.25}, tiers=("tech-touch",)),
    )
    flags = campaign_eligibility(scores, rules)
    assert flags["eligible_grow"].tolist() == [True, True, False]
    assert flags["eligible_save"].tolist() == [True, False, False]
    assert flags["eligible_campaigns"].tolist() == ["grow,save", "grow", ""]


def test_campaign_rule_on_a_missing_column_is_named():
    rule = CampaignRule(name="x", at_least={"nps": 9})
    with pytest.raises(ValueError, match=r"campaign 'x': scores have no column 'nps'"):
        rule_matches(scores_frame([{}]), rule)


def test_campaign_names_must_be_unique_and_well_formed():
    from pydantic import ValidationError

    from serving.settings import PortfolioSettings

    with pytest.raises(ValidationError, match="repeated"):
        PortfolioSettings(campaigns=(CampaignRule(name="a"), CampaignRule(name="a")))
    with pytest.raises(ValidationError):
        CampaignRule(name="Has Space")
