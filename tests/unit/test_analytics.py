"""Portfolio metrics on hand-built portfolios whose values are computed by hand."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

import serving.analytics
from serving.analytics import (
    _churn_events,
    arr_lost_bands,
    band_draws,
    concentration,
    coverage_by_segment,
    expansion_amount,
    expected_arr_at_risk,
    expected_expansion,
    forecast_nrr,
    metrics_by,
    parent_of,
    pipeline_velocity,
    realised_nrr,
    target_status,
    uncovered_targets,
)
from serving.portfolio_inputs import (
    PortfolioInputError,
    check_accounts,
    check_arr_history,
    check_scores,
)
from serving.settings import MetricSettings, PortfolioSettings, ValueSettings


def scores_frame(rows: list[dict]) -> pd.DataFrame:
    defaults = {"p_churn": 0.0, "p_upsell": 0.0, "arr": 0.0}
    return check_scores(pd.DataFrame([{**defaults, **row} for row in rows]))


# --------------------------------------------------------------------------- expected values


def test_expected_arr_at_risk_and_expansion_by_hand():
    scores = scores_frame(
        [
            {
                "account_id": "A",
                "p_churn": 0.1,
                "p_upsell": 0.5,
                "arr": 100.0,
                "open_expansion_pipeline": 30.0,
            },
            {
                "account_id": "B",
                "p_churn": 0.2,
                "p_upsell": 0.4,
                "arr": 200.0,
                "open_expansion_pipeline": None,
            },
        ]
    )
    value = ValueSettings(expansion_fraction_of_arr=0.1)
    assert expected_arr_at_risk(scores).tolist() == pytest.approx([10.0, 40.0])
    # A: max(30, 0.1 x 100) = 30; B: no pipeline -> 0.1 x 200 = 20
    assert expansion_amount(scores, value).tolist() == pytest.approx([30.0, 20.0])
    assert expected_expansion(scores, value).tolist() == pytest.approx([15.0, 8.0])


def test_expansion_without_pipeline_column_is_a_fraction_of_arr():
    scores = scores_frame([{"account_id": "A", "p_upsell": 0.5, "arr": 1000.0}])
    value = ValueSettings(expansion_fraction_of_arr=0.25)
    assert expected_expansion(scores, value).tolist() == [125.0]


# --------------------------------------------------------------------------- ARR-lost band


def test_band_of_certain_outcomes_is_exact():
    scores = scores_frame(
        [
            {"account_id": "A", "p_churn": 1.0, "arr": 100.0, "segment": "x"},
            {"account_id": "B", "p_churn": 0.0, "arr": 50.0, "segment": "y"},
            {"account_id": "C", "p_churn": 1.0, "arr": 25.0, "segment": "x"},
        ]
    )
    bands = arr_lost_bands(scores, MetricSettings(band_draws=500), ("segment",))
    assert bands[None].loc["all"].tolist() == [125.0, 125.0, 125.0]
    assert bands["segment"].loc["x"].tolist() == [125.0, 125.0, 125.0]
    assert bands["segment"].loc["y"].tolist() == [0.0, 0.0, 0.0]


def test_band_of_a_single_coin_flip_spans_nothing_to_everything():
    scores = scores_frame([{"account_id": "A", "p_churn": 0.5, "arr": 100.0}])
    band = arr_lost_bands(scores, MetricSettings(band_draws=4000))[None].loc["all"]
    assert band["p10"] == 0.0
    assert band["p90"] == 100.0


def test_band_matches_the_binomial_quantiles_of_identical_accounts():
    # 200 accounts of ARR 1 churning with p = 0.3: ARR lost ~ Binomial(200, 0.3)
    scores = scores_frame(
        [{"account_id": f"A{i:03d}", "p_churn": 0.3, "arr": 1.0} for i in range(200)]
    )
    band = arr_lost_bands(scores, MetricSettings(band_draws=20_000))[None].loc["all"]
    exact = binom.ppf([0.1, 0.5, 0.9], 200, 0.3)
    assert np.abs(band.to_numpy() - exact).max() <= 1.0


def test_band_matches_the_exact_distribution_of_unequal_accounts():
    # 40 accounts with ARR 1-3 and p from 0.02 to 0.9: the exact distribution of ARR lost
    # by convolution, its quantiles against the simulation's
    rng = np.random.default_rng(11)
    arr = rng.integers(1, 4, 40)
    p = np.round(np.linspace(0.02, 0.9, 40), 4)
    scores = scores_frame(
        [
            {"account_id": f"A{i:02d}", "p_churn": float(p[i]), "arr": float(arr[i])}
            for i in range(40)
        ]
    )
    pmf = np.zeros(int(arr.sum()) + 1)
    pmf[0] = 1.0
    for amount, chance in zip(arr, p, strict=True):
        pmf = (1 - chance) * pmf + chance * np.r_[np.zeros(amount), pmf[:-amount]]
    cdf = np.cumsum(pmf)
    exact = [int(np.searchsorted(cdf, q - 1e-12)) for q in (0.1, 0.5, 0.9)]
    band = arr_lost_bands(scores, MetricSettings(band_draws=20_000))[None].loc["all"]
    assert np.abs(band.to_numpy() - exact).max() <= 1.0


@pytest.mark.parametrize(
    "constants",
    [
        {},
        {"_GAPS_MARGIN_SD": 0.0, "_GAPS_MARGIN": 0.0},  # gaps run out: every account extends
        {"_BAND_EVENTS_PER_BLOCK": 500},  # many blocks of accounts
    ],
    ids=["default", "gaps-run-out", "small-blocks"],
)
def test_churn_events_are_independent_bernoulli_draws(monkeypatch, constants):
    for name, value in constants.items():
        monkeypatch.setattr(serving.analytics, name, value)
    levels = np.array([0.0, 1e-4, 0.01, 0.3, 0.5, 0.97, 1.0])
    per_level, draws = 400, 1_000
    p = np.repeat(levels, per_level)
    blocks = list(_churn_events(p, draws, np.random.default_rng(5)))
    account = np.concatenate([a for a, _ in blocks])
    draw = np.concatenate([d for _, d in blocks])
    assert draw.min() >= 0 and draw.max() < draws
    assert len(np.unique(account * draws + draw)) == len(account)  # at most once per draw
    counts = np.bincount(account, minlength=len(p)).reshape(len(levels), per_level)
    assert (counts[0] == 0).all() and (counts[-1] == draws).all()
    for level, row in zip(levels, counts, strict=True):
        mean, sd = draws * per_level * level, np.sqrt(draws * per_level * level * (1 - level))
        assert abs(row.sum() - mean) <= 5 * sd + 1e-9
    # no draw is favoured: churns of the p = 0.5 accounts spread evenly over the draws
    half = np.isin(account, np.nonzero(p == 0.5)[0])
    by_tenth = np.bincount(draw[half] * 10 // draws, minlength=10)
    expected = half.sum() / 10
    assert np.abs(by_tenth - expected).max() <= 5 * np.sqrt(expected)


def test_band_is_deterministic_and_independent_of_row_order():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(50)],
            "p_churn": rng.random(50),
            "arr": rng.lognormal(8, 1, 50),
            "segment": rng.choice(["a", "b"], 50),
        }
    ).assign(p_upsell=0.0)
    settings = MetricSettings(band_draws=3000, group_band_draws=1000)
    first = arr_lost_bands(check_scores(frame), settings, ("segment",))
    again = arr_lost_bands(check_scores(frame), settings, ("segment",))
    shuffled = arr_lost_bands(
        check_scores(frame.sample(frac=1, random_state=1)), settings, ("segment",)
    )
    for key in (None, "segment"):
        pd.testing.assert_frame_equal(first[key], again[key])
        pd.testing.assert_frame_equal(first[key], shuffled[key])
    assert (
        first[None].loc["all", "p10"]
        <= first[None].loc["all", "p50"]
        <= first[None].loc["all", "p90"]
    )


def test_band_of_an_empty_portfolio_is_zero():
    empty = check_scores(pd.DataFrame(columns=["account_id", "p_churn", "p_upsell", "arr"]))
    bands = arr_lost_bands(empty, MetricSettings(), ("segment",))
    assert bands[None].loc["all"].tolist() == [0.0, 0.0, 0.0]
    assert bands["segment"].empty


def test_large_portfolios_use_fewer_draws_but_never_too_few():
    settings = MetricSettings(band_draws=10_000, band_max_cells=200_000_000, band_min_draws=2_000)
    assert band_draws(10_000, settings) == 10_000
    assert band_draws(40_000, settings) == 5_000
    assert band_draws(1_000_000, settings) == 2_000
    assert band_draws(0, settings) == 10_000


# --------------------------------------------------------------------------- concentration


def roll_up_portfolio() -> tuple[pd.DataFrame, pd.DataFrame]:
    # P is a holding that is not a customer; C1 and C2 are its children, G a grandchild.
    accounts = check_accounts(
        pd.DataFrame(
            {
                "account_id": ["P", "C1", "C2", "G", "D", "E", "F"],
                "parent_account_id": [None, "P", "P", "C1", None, None, None],
                "industry": [None, "tech", "retail", "tech", "tech", "retail", None],
            }
        )
    )
    scores = scores_frame(
        [
            {"account_id": "C1", "arr": 20.0, "industry": "tech"},
            {"account_id": "C2", "arr": 20.0, "industry": "retail"},
            {"account_id": "G", "arr": 10.0, "industry": "tech"},
            {"account_id": "D", "arr": 25.0, "industry": "tech"},
            {"account_id": "E", "arr": 15.0, "industry": "retail"},
            {"account_id": "F", "arr": 10.0, "industry": None},
        ]
    )
    return scores, accounts


def test_parent_roll_up_follows_chains_to_the_top():
    scores, accounts = roll_up_portfolio()
    assert parent_of(scores, accounts).tolist() == ["P", "P", "P", "D", "E", "F"]


def test_parent_roll_up_uses_the_scores_when_there_is_no_accounts_table():
    scores = scores_frame(
        [
            {"account_id": "A", "arr": 1.0, "parent_account_id": "H"},
            {"account_id": "B", "arr": 1.0},
        ]
    )
    assert parent_of(scores, None).tolist() == ["H", "B"]


def test_a_parent_cycle_is_an_error_naming_the_accounts():
    scores = scores_frame(
        [
            {"account_id": "X", "arr": 1.0, "parent_account_id": "Y"},
            {"account_id": "Y", "arr": 1.0, "parent_account_id": "X"},
        ]
    )
    with pytest.raises(PortfolioInputError, match=r"cycle through \['X', 'Y'\]"):
        parent_of(scores, None)


def test_concentration_by_hand():
    scores, accounts = roll_up_portfolio()
    result = concentration(scores, accounts, MetricSettings(concentration_top_n=2))
    # rolled up: P = 50, D = 25, E = 15, F = 10 of 100
    assert result.top_share == pytest.approx(0.75)
    assert result.top_parents == ["P", "D"]
    assert result.herfindahl == pytest.approx(0.25 + 0.0625 + 0.0225 + 0.01)
    # industries: tech 55, retail 35, unknown 10
    assert result.largest_industry == "tech"
    assert result.largest_industry_share == pytest.approx(0.55)


def test_concentration_of_a_single_account_is_total():
    scores = scores_frame([{"account_id": "A", "arr": 10.0, "industry": "x"}])
    result = concentration(scores, None, MetricSettings())
    assert (result.top_share, result.herfindahl, result.largest_industry_share) == (1.0, 1.0, 1.0)


def test_concentration_with_zero_arr_is_undefined_not_an_error():
    scores = scores_frame([{"account_id": "A", "arr": 0.0}, {"account_id": "B", "arr": 0.0}])
    result = concentration(scores, None, MetricSettings())
    assert result.top_share is None and result.herfindahl is None
    assert result.top_parents == []


# --------------------------------------------------------------------------- coverage


def coverage_portfolio() -> tuple[pd.DataFrame, pd.DataFrame]:
    accounts = check_accounts(
        pd.DataFrame(
            {
                "account_id": ["T1", "T2", "N1", "M1", "S1", "U1", "Z1"],
                "segment": ["ent", "ent", "ent", "mid", "smb", None, "ent"],
                "is_target": [True, True, False, True, False, True, True],
            }
        )
    )
    scores = scores_frame(
        [
            {"account_id": "T1", "arr": 10.0, "segment": "ent"},
            {"account_id": "N1", "arr": 10.0, "segment": "ent"},
            {"account_id": "S1", "arr": 10.0, "segment": "smb"},
            {"account_id": "U1", "arr": 10.0},
            {"account_id": "Z1", "arr": 0.0, "segment": "ent"},  # scored but not paying
        ]
    )
    return scores, accounts


def test_coverage_by_segment_by_hand():
    scores, accounts = coverage_portfolio()
    coverage = coverage_by_segment(target_status(scores, accounts, MetricSettings()))
    # ent: targets T1, T2, Z1; active T1, N1 -> 1 / 3
    assert coverage.loc["ent"].tolist() == [3, 2, 1, pytest.approx(1 / 3)]
    # mid: a target segment with no customer at all -> 0
    assert coverage.loc["mid"].tolist() == [1, 0, 0, 0.0]
    # smb: no targets -> undefined
    assert coverage.loc["smb", "coverage"] is None
    # a missing segment is grouped as "unknown"
    assert coverage.loc["unknown"].tolist() == [1, 1, 1, 1.0]


def test_uncovered_targets_lists_the_targets_that_are_not_customers():
    scores, accounts = coverage_portfolio()
    assert uncovered_targets(target_status(scores, accounts, MetricSettings())) == {
        "ent": ["T2", "Z1"],
        "mid": ["M1"],
    }


def test_coverage_without_any_target_flag_is_empty():
    scores = scores_frame([{"account_id": "A", "arr": 1.0, "segment": "x"}])
    assert coverage_by_segment(target_status(scores, None, MetricSettings())).empty


# --------------------------------------------------------------------------- NRR


def test_realised_nrr_by_hand():
    history = check_arr_history(
        pd.DataFrame(
            {
                "account_id": ["A", "B", "C", "D"],
                "arr_start": [100.0, 100.0, 50.0, 0.0],
                "arr_end": [120.0, 80.0, 0.0, 40.0],
            }
        )
    )
    result = realised_nrr(history)
    # (250 + 20 - 20 - 50) / 250; D is new and not in NRR
    assert result.nrr == pytest.approx(0.8)
    assert (result.arr_start, result.expansion, result.contraction, result.churn) == (
        250.0,
        20.0,
        20.0,
        50.0,
    )
    assert result.accounts_at_start == 3


def test_realised_nrr_without_history_or_without_start_arr():
    assert realised_nrr(None) is None
    nobody = check_arr_history(
        pd.DataFrame({"account_id": ["A"], "arr_start": [0.0], "arr_end": [10.0]})
    )
    assert realised_nrr(nobody).nrr is None


def test_forecast_nrr_by_hand():
    scores = scores_frame(
        [
            {
                "account_id": "A",
                "p_churn": 0.1,
                "p_upsell": 0.5,
                "arr": 100.0,
                "open_expansion_pipeline": 30.0,
            },
            {
                "account_id": "B",
                "p_churn": 0.2,
                "p_upsell": 0.0,
                "arr": 200.0,
                "open_expansion_pipeline": 0.0,
            },
        ]
    )
    result = forecast_nrr(scores, PortfolioSettings())
    # (300 - (10 + 40) + 0.5 x 30) / 300
    assert result.nrr == pytest.approx(265 / 300)
    assert (result.expected_churn, result.expected_expansion, result.horizon_days) == (
        50.0,
        15.0,
        90,
    )


def test_forecast_nrr_of_zero_arr_is_undefined():
    scores = scores_frame([{"account_id": "A", "p_churn": 0.5, "arr": 0.0}])
    assert forecast_nrr(scores, PortfolioSettings()).nrr is None


# --------------------------------------------------------------------------- pipeline velocity


def opportunities_frame() -> pd.DataFrame:
    rows = [
        ("o1", "2024-02-01", "2024-03-01", "won", 100.0, "new"),
        ("o2", "2024-05-01", "2024-06-01", "lost", 300.0, "expansion"),
        ("o3", "2024-07-01", None, "open", 200.0, "new"),
        ("o4", "2024-08-01", "2024-08-15", "won", 1000.0, "renewal"),  # not pipeline
        ("o5", "2023-06-01", "2024-02-01", "won", 400.0, "new"),  # created before the window
        ("o6", "2025-01-10", None, "open", 70.0, "new"),  # after as_of
        ("o7", "2024-09-01", "2025-02-01", "won", 50.0, "new"),  # won after as_of: open then
    ]
    return pd.DataFrame(
        {
            "account_id": [r[0].upper() for r in rows],
            "created_at": pd.to_datetime([r[1] for r in rows]),
            "closed_at": pd.to_datetime([r[2] for r in rows]),
            "stage": [r[3] for r in rows],
            "amount": [r[4] for r in rows],
            "kind": [r[5] for r in rows],
        }
    )


def test_pipeline_velocity_by_hand():
    settings = MetricSettings(velocity_window_days=360, velocity_period_days=30)
    result = pipeline_velocity(opportunities_frame(), pd.Timestamp("2024-12-31"), settings)
    # qualified: o1 o2 o3 o7 over 12 periods; closed in the window: o1 won, o2 lost, o5 won
    assert result.qualified_opportunities == 4
    assert result.opportunities_per_period == pytest.approx(4 / 12)
    assert (result.won, result.lost) == (2, 1)
    assert result.win_rate == pytest.approx(2 / 3)
    assert result.velocity == pytest.approx(4 / 12 * 2 / 3)
    # amounts: qualified 650 per 12 periods; won 500 of 800 closed
    assert result.qualified_amount_per_period == pytest.approx(650 / 12)
    assert result.amount_win_rate == pytest.approx(0.625)
    assert result.amount_velocity == pytest.approx(650 / 12 * 0.625)
    # cycles: o1 29 days (2024 is a leap year), o5 245 days
    assert result.average_cycle_days == pytest.approx(137.0)
    assert result.reason is None


def test_pipeline_velocity_without_opportunities_is_null_with_a_reason():
    result = pipeline_velocity(None, pd.Timestamp("2024-12-31"), MetricSettings())
    assert result.velocity is None and result.amount_velocity is None
    assert result.reason == "no opportunities table"


def test_pipeline_velocity_with_nothing_closed_is_null_with_a_reason():
    opportunities = opportunities_frame()
    opportunities = opportunities[opportunities["account_id"] == "O3"]
    result = pipeline_velocity(opportunities, pd.Timestamp("2024-12-31"), MetricSettings())
    assert result.qualified_opportunities == 1
    assert result.velocity is None
    assert "closed" in result.reason


def test_pipeline_velocity_with_no_opportunity_in_the_window():
    result = pipeline_velocity(
        opportunities_frame().iloc[0:0], pd.Timestamp("2024-12-31"), MetricSettings()
    )
    assert result.velocity is None and result.qualified_opportunities == 0
    assert result.reason is not None


# --------------------------------------------------------------------------- breakdowns


def test_metrics_by_segment_by_hand():
    scores = scores_frame(
        [
            {"account_id": "A", "p_churn": 0.5, "arr": 100.0, "segment": "x"},
            {"account_id": "B", "p_churn": 0.0, "arr": 300.0, "segment": "x"},
            {"account_id": "C", "p_churn": 1.0, "arr": 100.0, "segment": None},
        ]
    )
    scores["expected_arr_at_risk"] = expected_arr_at_risk(scores)
    scores["expected_expansion"] = 0.0
    settings = MetricSettings(band_draws=200)
    bands = arr_lost_bands(scores, settings, ("segment",))
    table = metrics_by(scores, "segment", bands["segment"], settings)
    assert table.loc["x", "accounts"] == 2
    assert table.loc["x", "arr_share"] == pytest.approx(0.8)
    assert table.loc["x", "weighted_churn_risk"] == pytest.approx(50.0)
    assert table.loc["x", "weighted_churn_share"] == pytest.approx(50 / 400)
    assert table.loc["x", "nrr_forecast"] == pytest.approx(350 / 400)
    assert table.loc["unknown", ["p10", "p50", "p90"]].tolist() == [100.0, 100.0, 100.0]


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"p_churn": [1.5, 0.1]}, r"'p_churn' is outside \[0, 1\] for account_id \['A'\]"),
        ({"arr": [-1.0, 1.0]}, r"'arr' is negative for account_id \['A'\]"),
        ({"account_id": ["A", "A"]}, r"account_id is not unique; repeated: \['A'\]"),
        ({"p_upsell": [None, 0.1]}, r"'p_upsell' is empty or infinite for account_id \['A'\]"),
        ({"arr": ["x", 1.0]}, r"'arr' is not numeric for account_id \['A'\]"),
    ],
)
def test_bad_scores_are_named(change, message):
    frame = pd.DataFrame(
        {"account_id": ["A", "B"], "p_churn": [0.1, 0.1], "p_upsell": [0.1, 0.1], "arr": [1.0, 1.0]}
    )
    for column, values in change.items():
        frame[column] = pd.Series(values, dtype=object)
    with pytest.raises(PortfolioInputError, match=message):
        check_scores(frame)


def test_missing_score_columns_are_named():
    with pytest.raises(PortfolioInputError, match=r"scores: missing column\(s\) \['p_upsell'\]"):
        check_scores(pd.DataFrame({"account_id": ["A"], "p_churn": [0.1], "arr": [1.0]}))


def test_id_membership_matches_pandas_isin_for_series_index_and_lists():
    from serving.analytics import _isin

    values = pd.Series(["a", "b", None, "d"], dtype="str")
    candidates = pd.Index(["d", "a", "x"], dtype="str")
    expected = values.isin(candidates).to_numpy(dtype=bool)
    assert _isin(values, candidates).tolist() == expected.tolist() == [True, False, False, True]
    assert _isin(pd.Index(values), ["b"]).tolist() == [False, True, False, False]
    assert _isin(values.astype(object), pd.Series([], dtype="str")).tolist() == [False] * 4


@pytest.mark.parametrize("length", [1, 2, 3, 5])
def test_a_parent_cycle_of_any_length_behind_a_chain_is_an_error(length):
    # C0 -> C1 -> ... -> C(length-1) -> C0, reached from the scored account A through B
    cycle = [f"C{i}" for i in range(length)]
    links = {"A": "B", "B": cycle[0]} | {
        c: cycle[(i + 1) % length] for i, c in enumerate(cycle) if length > 1
    }
    scores = pd.DataFrame(
        {
            "account_id": pd.Series(["A", "Z"], dtype="str"),
            "parent_account_id": pd.Series([links["A"], None], dtype="str"),
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": pd.Series(list(links), dtype="str"),
            "parent_account_id": pd.Series(list(links.values()), dtype="str"),
        }
    )
    if length == 1:  # a self-link is no link: C0 is the top
        assert serving.analytics.parent_of(scores, accounts).tolist() == ["C0", "Z"]
        return
    with pytest.raises(
        PortfolioInputError,
        match=re.escape(f"cycle through {sorted(cycle)!r}"),
    ):
        serving.analytics.parent_of(scores, accounts)


def test_parents_roll_up_long_chains_to_the_top():
    chain = [f"N{i:03d}" for i in range(300)]  # N000 -> N001 -> ... -> N299 (the top)
    accounts = pd.DataFrame(
        {
            "account_id": pd.Series(chain, dtype="str"),
            "parent_account_id": pd.Series([*chain[1:], None], dtype="str"),
        }
    )
    scores = pd.DataFrame(
        {
            "account_id": pd.Series(["N000", "N150", "N299", "X"], dtype="str"),
            "parent_account_id": pd.Series([None, None, None, "N010"], dtype="str"),
        }
    )
    tops = serving.analytics.parent_of(scores, accounts)
    assert tops.tolist() == ["N299", "N299", "N299", "N299"]
    assert list(tops.index) == list(scores.index)
