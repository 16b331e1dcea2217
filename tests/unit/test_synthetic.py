"""The synthetic portfolio generator: contract tables, realism ranges and the ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from features.contract import CONTRACT
from features.synthetic import (
    GROUND_TRUTH_COLUMNS,
    GeneratorSettings,
    SyntheticPortfolio,
    generate_portfolio,
    write_portfolio,
)

LOADER_DTYPES = {
    "id": "str",
    "string": "str",
    "date": "datetime64[ns]",
    "number": "float64",
    "bool": "boolean",
}
PROBABILITY_COLUMNS = ("p_churn_monthly", "p_expand_monthly", "p_churn_true", "p_expand_true")


@pytest.fixture(scope="module")
def saas() -> SyntheticPortfolio:
    return generate_portfolio(GeneratorSettings(n_accounts=1000, seed=0))


@pytest.fixture(scope="module")
def orders() -> SyntheticPortfolio:
    return generate_portfolio(GeneratorSettings(n_accounts=600, seed=0, kind="orders"))


@pytest.fixture(scope="module", params=[1, 2])
def saas_other_seed(request: pytest.FixtureRequest) -> SyntheticPortfolio:
    return generate_portfolio(GeneratorSettings(n_accounts=1000, seed=request.param))


def arr_on(subscriptions: pd.DataFrame, day: str | pd.Timestamp) -> pd.Series:
    """ARR per account on `day` by the contract's definition (active rows' arr summed)."""
    day = pd.Timestamp(day)
    active = (subscriptions["start_date"] <= day) & (
        subscriptions["end_date"].isna() | (subscriptions["end_date"] > day)
    )
    return subscriptions[active].groupby("account_id")["arr"].sum()


def top10_share(portfolio: SyntheticPortfolio, day: str) -> float:
    arr = arr_on(portfolio.tables["subscriptions"], day)
    parents = portfolio.tables["accounts"].set_index("account_id")["parent_account_id"]
    top_level = parents.reindex(arr.index).fillna(pd.Series(arr.index, index=arr.index))
    rolled = arr.groupby(top_level).sum().sort_values(ascending=False)
    return float(rolled.head(10).sum() / rolled.sum())


def yearly_rates(portfolio: SyntheticPortfolio, start: str) -> pd.DataFrame:
    """Per account active at `start`: churned (ARR 0 a year later) and expanded (ARR >= 1.1x)."""
    subscriptions = portfolio.tables["subscriptions"]
    before = arr_on(subscriptions, start)
    after = arr_on(subscriptions, pd.Timestamp(start) + pd.DateOffset(years=1))
    after = after.reindex(before.index).fillna(0.0)
    segments = portfolio.tables["accounts"].set_index("account_id")["segment"]
    return pd.DataFrame(
        {
            "segment": segments.reindex(before.index),
            "churned": after <= 0,
            "expanded": (after > 0) & (after >= 1.1 * before),
        }
    )


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("kind", ["saas", "orders"])
def test_every_table_has_the_contract_columns_and_loader_dtypes(
    kind: str, saas: SyntheticPortfolio, orders: SyntheticPortfolio
) -> None:
    portfolio = saas if kind == "saas" else orders
    for name, frame in portfolio.tables.items():
        spec = CONTRACT[name]
        assert list(frame.columns) == spec.column_names, name
        for column in spec.columns:
            assert str(frame[column.name].dtype) == LOADER_DTYPES[column.type], (name, column.name)
        for column in spec.required_columns:
            assert frame[column].notna().all(), (name, column)


def test_saas_and_orders_table_sets(saas: SyntheticPortfolio, orders: SyntheticPortfolio) -> None:
    assert set(saas.tables) == {
        "accounts",
        "subscriptions",
        "usage",
        "support_tickets",
        "opportunities",
        "nps",
        "invoices",
        "account_managers",
    }
    assert "orders" in orders.tables
    assert "subscriptions" not in orders.tables and "usage" not in orders.tables


@pytest.mark.parametrize("kind", ["saas", "orders"])
def test_written_sources_load_identically_and_validate_clean(
    kind: str, saas: SyntheticPortfolio, orders: SyntheticPortfolio, tmp_path: Path
) -> None:
    from features.sources import load_sources
    from features.validation import validate_sources

    portfolio = saas if kind == "saas" else orders
    sources = write_portfolio(portfolio, tmp_path)
    document = yaml.safe_load(sources.read_text())
    assert document["name"] == portfolio.settings.portfolio_name
    assert document["tables"] == {name: {"path": f"{name}.parquet"} for name in portfolio.tables}
    assert (tmp_path / "ground_truth.parquet").exists()
    written_settings = (tmp_path / "settings.json").read_text()
    assert GeneratorSettings.model_validate_json(written_settings) == portfolio.settings

    report = validate_sources(sources)
    assert report.ok, report.errors
    assert report.warnings == []
    loaded = load_sources(sources)
    for name, frame in portfolio.tables.items():
        pd.testing.assert_frame_equal(loaded.tables[name], frame, check_exact=True, obj=name)
    ground_truth = pd.read_parquet(tmp_path / "ground_truth.parquet")
    assert list(ground_truth.columns) == list(GROUND_TRUTH_COLUMNS)
    assert len(ground_truth) == len(portfolio.ground_truth)


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    settings = GeneratorSettings(n_accounts=300, months=18, seed=7)
    first, second = generate_portfolio(settings), generate_portfolio(settings)
    for name, frame in first.tables.items():
        pd.testing.assert_frame_equal(frame, second.tables[name], check_exact=True, obj=name)
    pd.testing.assert_frame_equal(first.ground_truth, second.ground_truth, check_exact=True)
    other = generate_portfolio(settings.model_copy(update={"seed": 8}))
    assert not other.tables["subscriptions"].equals(first.tables["subscriptions"])


def test_orders_kind_is_deterministic_too() -> None:
    settings = GeneratorSettings(n_accounts=200, months=12, seed=3, kind="orders")
    first, second = generate_portfolio(settings), generate_portfolio(settings)
    pd.testing.assert_frame_equal(first.tables["orders"], second.tables["orders"], check_exact=True)
    pd.testing.assert_frame_equal(first.ground_truth, second.ground_truth, check_exact=True)


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValidationError, match="first day of a month"):
        GeneratorSettings(n_accounts=10, start="2024-01-15")
    with pytest.raises(ValidationError):
        GeneratorSettings(n_accounts=0)
    with pytest.raises(ValidationError):
        GeneratorSettings(n_accounts=10, kind="retail")


# --------------------------------------------------------------------------- realism


def test_top10_concentration_with_parents_rolled_up(
    saas: SyntheticPortfolio, saas_other_seed: SyntheticPortfolio
) -> None:
    for portfolio in (saas, saas_other_seed):
        for day in ("2023-06-30", "2025-12-31"):
            assert 0.15 <= top10_share(portfolio, day) <= 0.45


def test_yearly_churn_and_expansion_base_rates(saas: SyntheticPortfolio) -> None:
    rates = pd.concat([yearly_rates(saas, "2023-01-01"), yearly_rates(saas, "2024-01-01")])
    assert 0.08 <= rates["churned"].mean() <= 0.22
    assert 0.12 <= rates["expanded"].mean() <= 0.32
    by_segment = rates.groupby("segment")["churned"].mean()
    assert by_segment["smb"] > by_segment["mid-market"] > by_segment["enterprise"]


def test_accounts_customers_prospects_targets_and_parents(saas: SyntheticPortfolio) -> None:
    accounts = saas.tables["accounts"]
    subscriptions = saas.tables["subscriptions"]
    customers = set(subscriptions["account_id"])
    never_customers = accounts[~accounts["account_id"].isin(customers)]
    assert len(never_customers) > 0
    assert never_customers["is_target"].sum() > 0
    assert accounts["is_target"].mean() < 1
    assert set(accounts["segment"]) == {"enterprise", "mid-market", "smb"}
    # customers acquired during the data as well as before it
    first_start = subscriptions.groupby("account_id")["start_date"].min()
    assert (first_start < pd.Timestamp("2023-01-01")).any()
    assert (first_start >= pd.Timestamp("2023-01-01")).any()
    # parent/child: parents exist, are top level and share the child's industry
    children = accounts[accounts["parent_account_id"].notna()]
    assert len(children) > 0
    by_id = accounts.set_index("account_id")
    parents = by_id.loc[children["parent_account_id"]]
    assert parents["parent_account_id"].isna().all()
    assert (parents["industry"].to_numpy() == children["industry"].to_numpy()).all()


def test_account_managers_own_accounts_within_seniority(saas: SyntheticPortfolio) -> None:
    accounts = saas.tables["accounts"]
    managers = saas.tables["account_managers"].set_index("owner_id")
    owned = accounts[accounts["owner_id"].notna()]
    assert owned["owner_id"].isin(managers.index).all()
    assert set(managers["seniority"]) == {"executive", "senior", "junior"}
    enterprise = owned[owned["segment"] == "enterprise"]
    assert (managers.loc[enterprise["owner_id"], "seniority"] == "executive").all()
    load = owned.groupby("owner_id").size()
    assert (managers["capacity_accounts"] > 0).all()
    assert load.sum() == pytest.approx(
        managers["capacity_accounts"].sum() * 0.95, rel=0.35
    )  # staffed close to capacity


def test_subscription_rows_chain_without_gaps(saas: SyntheticPortfolio) -> None:
    subscriptions = saas.tables["subscriptions"].sort_values(["account_id", "start_date"])
    assert (subscriptions["arr"] > 0).all()
    # a price per seat per account: expansions and downgrades change seats, not the price
    price = subscriptions["arr"] / subscriptions["seats"]
    assert (price.groupby(subscriptions["account_id"]).nunique() == 1).all()
    same_account = subscriptions["account_id"].eq(subscriptions["account_id"].shift(-1))
    next_start = subscriptions["start_date"].shift(-1)
    chained = subscriptions.loc[same_account, "end_date"] == next_start[same_account]
    assert chained.all()
    ended = subscriptions["end_date"].notna()
    assert (subscriptions.loc[ended, "end_date"] > subscriptions.loc[ended, "start_date"]).all()
    # at most one open row per account
    assert subscriptions["end_date"].isna().groupby(subscriptions["account_id"]).sum().max() == 1


def test_usage_is_weekly_and_within_seats(saas: SyntheticPortfolio) -> None:
    usage = saas.tables["usage"]
    assert (usage["active_users"] <= usage["seats_licensed"]).all()
    gaps = usage.groupby("account_id")["date"].diff().dropna()
    assert (gaps == pd.Timedelta(days=7)).all()
    # licensed seats in usage match the subscription active that day
    sample = usage.sample(2000, random_state=0)
    subscriptions = saas.tables["subscriptions"]
    merged = sample.merge(subscriptions, on="account_id")
    active = (merged["start_date"] <= merged["date"]) & (
        merged["end_date"].isna() | (merged["end_date"] > merged["date"])
    )
    matched = merged[active]
    assert len(matched) == len(sample)
    assert (matched["seats"] == matched["seats_licensed"]).all()


def test_signals_follow_health(saas: SyntheticPortfolio) -> None:
    """Unhealthy account-months show more urgent tickets, lower NPS and lower utilisation."""
    truth = saas.ground_truth[["account_id", "month", "health"]]

    def with_health(frame: pd.DataFrame, date_column: str) -> pd.DataFrame:
        month = frame[date_column].dt.to_period("M").dt.to_timestamp()
        return frame.assign(month=month).merge(truth, on=["account_id", "month"])

    nps = with_health(saas.tables["nps"], "date")
    assert np.corrcoef(nps["health"], nps["score"])[0, 1] > 0.4
    tickets = with_health(saas.tables["support_tickets"], "created_at")
    urgent = tickets["priority"].isin(["high", "urgent"])
    assert tickets.loc[urgent, "health"].mean() < tickets.loc[~urgent, "health"].mean() - 0.2
    usage = with_health(saas.tables["usage"], "date")
    utilisation = usage["active_users"] / usage["seats_licensed"]
    assert np.corrcoef(usage["health"], utilisation)[0, 1] > 0.2
    invoices = with_health(saas.tables["invoices"], "due_date")
    late = invoices["paid_at"] > invoices["due_date"]
    assert invoices.loc[late, "health"].mean() < invoices.loc[~late, "health"].mean() - 0.2


def test_health_is_correlated_within_an_industry(saas: SyntheticPortfolio) -> None:
    truth = saas.ground_truth.merge(
        saas.tables["accounts"][["account_id", "industry"]], on="account_id"
    )
    # month-to-month movement of the industry mean health vs shuffled industries
    own = truth["health"] - truth.groupby("account_id")["health"].transform("mean")
    by_industry = own.groupby([truth["industry"], truth["month"]]).mean().groupby(level=0).std()
    shuffled = truth["industry"].sample(frac=1.0, random_state=0).to_numpy()
    by_random = own.groupby([shuffled, truth["month"].to_numpy()]).mean().groupby(level=0).std()
    assert by_industry.mean() > 2 * by_random.mean()


def test_opportunities_stages_kinds_and_dates(saas: SyntheticPortfolio) -> None:
    opportunities = saas.tables["opportunities"]
    assert set(opportunities["kind"]) == {"new", "expansion", "renewal"}
    assert set(opportunities["stage"]) == {"open", "won", "lost"}
    is_open = opportunities["stage"] == "open"
    assert opportunities.loc[is_open, "closed_at"].isna().all()
    assert opportunities.loc[~is_open, "closed_at"].notna().all()
    closed = opportunities[~is_open]
    assert (closed["closed_at"] >= closed["created_at"]).all()
    won_expansion = closed[(closed["kind"] == "expansion") & (closed["stage"] == "won")]
    assert (won_expansion["amount"] > 0).all()


def test_orders_have_product_lines_margins_and_credits(orders: SyntheticPortfolio) -> None:
    frame = orders.tables["orders"]
    assert frame["product_line"].nunique() >= 4
    assert (frame["amount"] < 0).any() and (frame["amount"] > 0).mean() > 0.9
    assert (np.sign(frame["margin"]) == np.sign(frame["amount"])).all()
    margin_rate = (frame["margin"] / frame["amount"]).groupby(frame["product_line"]).mean()
    assert margin_rate.max() - margin_rate.min() > 0.2


# --------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("kind", ["saas", "orders"])
def test_ground_truth_present_and_probabilities_in_range(
    kind: str, saas: SyntheticPortfolio, orders: SyntheticPortfolio
) -> None:
    truth = (saas if kind == "saas" else orders).ground_truth
    assert list(truth.columns) == list(GROUND_TRUTH_COLUMNS)
    assert str(truth["account_id"].dtype) == "str"
    assert str(truth["month"].dtype) == "datetime64[ns]"
    assert truth["month"].dt.day.eq(1).all()
    assert not truth.duplicated(["account_id", "month"]).any()
    for column in PROBABILITY_COLUMNS:
        assert truth[column].notna().all(), column
        assert truth[column].between(0.0, 1.0).all(), column
    assert (truth["arr"] > 0).all()
    observed = truth["churned_90d"].notna()
    assert observed.mean() > 0.8
    assert truth.loc[~observed, "month"].min() > truth.loc[observed, "month"].max()


def test_ground_truth_rows_are_the_active_accounts(saas: SyntheticPortfolio) -> None:
    truth = saas.ground_truth
    subscriptions = saas.tables["subscriptions"]
    for month in ("2023-01-01", "2024-07-01", "2025-12-01"):
        arr = arr_on(subscriptions, month)
        rows = truth[truth["month"] == pd.Timestamp(month)].set_index("account_id")["arr"]
        assert set(rows.index) == set(arr.index)
        assert np.allclose(rows.sort_index(), arr.sort_index())


def test_realised_labels_match_the_tables(saas: SyntheticPortfolio) -> None:
    """churned_90d / expanded_90d are the contract labels computed from subscriptions."""
    truth = saas.ground_truth
    subscriptions = saas.tables["subscriptions"]
    for month in ("2023-03-01", "2024-02-01", "2025-08-01"):
        t = pd.Timestamp(month)
        rows = truth[truth["month"] == t].set_index("account_id")
        before = arr_on(subscriptions, t).reindex(rows.index)
        after = arr_on(subscriptions, t + pd.Timedelta(days=90)).reindex(rows.index).fillna(0)
        assert (rows["churned_90d"].astype(bool) == (after <= 0)).all()
        expanded = (after > 0) & (after >= 1.1 * before)
        assert (rows["expanded_90d"].astype(bool) == expanded).all()


@pytest.mark.parametrize("kind", ["saas", "orders"])
def test_true_churn_probability_drives_churn(
    kind: str, saas: SyntheticPortfolio, orders: SyntheticPortfolio
) -> None:
    truth = (saas if kind == "saas" else orders).ground_truth
    observed = truth[truth["churned_90d"].notna()]
    churned = observed["churned_90d"].astype(bool)
    assert roc_auc_score(churned, observed["p_churn_true"]) > 0.7
    # calibrated: the mean probability matches the realised rate
    assert observed["p_churn_true"].mean() == pytest.approx(churned.mean(), rel=0.2)


@pytest.mark.parametrize("kind", ["saas", "orders"])
def test_true_expansion_probability_drives_expansion(
    kind: str, saas: SyntheticPortfolio, orders: SyntheticPortfolio
) -> None:
    truth = (saas if kind == "saas" else orders).ground_truth
    observed = truth[truth["expanded_90d"].notna()]
    expanded = observed["expanded_90d"].astype(bool)
    assert roc_auc_score(expanded, observed["p_expand_true"]) > 0.7
    assert observed["p_expand_true"].mean() == pytest.approx(expanded.mean(), rel=0.2)


def test_orders_ground_truth_matches_the_order_table(orders: SyntheticPortfolio) -> None:
    """arr = revenue in (t-365d, t]; churned = no positive order in (t, t+90d]; upsell = +10%."""
    truth = orders.ground_truth
    table = orders.tables["orders"]

    def revenue(lo: pd.Timestamp, hi: pd.Timestamp, positive_only: bool = False) -> pd.Series:
        rows = table[(table["date"] > lo) & (table["date"] <= hi)]
        if positive_only:
            rows = rows[rows["amount"] > 0]
            return rows.groupby("account_id").size()
        return rows.groupby("account_id")["amount"].sum()

    day = pd.Timedelta(days=1)
    for month in ("2023-01-01", "2024-03-01", "2025-06-01"):
        t = pd.Timestamp(month)
        rows = truth[truth["month"] == t].set_index("account_id")
        arr = revenue(t - 365 * day, t)
        assert set(rows.index) == set(arr[arr.round(6) > 0].index)
        assert np.allclose(rows["arr"], arr.reindex(rows.index))
        orders_after = revenue(t, t + 90 * day, positive_only=True).reindex(rows.index).fillna(0)
        assert (rows["churned_90d"].astype(bool) == (orders_after == 0)).all()
        before = revenue(t - 90 * day, t).reindex(rows.index).fillna(0).round(6)
        after = revenue(t, t + 90 * day).reindex(rows.index).fillna(0).round(6)
        expanded = (after > 0) & (after >= 1.1 * before)
        assert (rows["expanded_90d"].astype(bool) == expanded).all()


def test_churn_happens_at_renewals(saas: SyntheticPortfolio) -> None:
    truth = saas.ground_truth
    renewal_months = truth[truth["months_to_renewal"] == 0]
    other_months = truth[truth["months_to_renewal"] > 2]
    assert renewal_months["p_churn_monthly"].mean() > 10 * other_months["p_churn_monthly"].mean()


# --------------------------------------------------------------------------- CLI


def test_generate_command_writes_a_valid_portfolio(tmp_path: Path) -> None:
    from serving.cli import app
    from serving.cli import commands as _commands  # noqa: F401  (registers the subcommands)

    runner = CliRunner()
    out = tmp_path / "portfolio"
    result = runner.invoke(
        app,
        [
            "generate",
            "--accounts",
            "150",
            "--months",
            "12",
            "--seed",
            "2",
            "--kind",
            "orders",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", "")
    assert "orders.parquet" in output and f"{out / 'sources.yaml'}" in output
    assert (out / "sources.yaml").exists() and (out / "orders.parquet").exists()
    result = runner.invoke(app, ["validate", "--sources", str(out / "sources.yaml")])
    assert result.exit_code == 0, result.output

    bad = runner.invoke(app, ["generate", "--accounts", "0", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1
    assert "accounts" in bad.output and "Traceback" not in bad.output


# 2025-10-01 is the last labelled snapshot of 36 months from 2023-01: its window
# ends on 2025-12-30, the day before the data's last day (the end-of-data edge).
@pytest.mark.parametrize("month", ["2024-06-01", "2025-10-01"])
@pytest.mark.parametrize("kind", ["saas", "orders"])
def test_ground_truth_agrees_with_the_product_labels(
    kind: str, month: str, saas: SyntheticPortfolio, orders: SyntheticPortfolio
) -> None:
    """Same active accounts and same churn/upsell labels as features.labels.build_labels."""
    from features.labels import build_labels

    portfolio = saas if kind == "saas" else orders
    labels = build_labels(portfolio.tables, month).set_index("account_id").sort_index()
    truth = portfolio.ground_truth
    truth = truth[truth["month"] == pd.Timestamp(month)].set_index("account_id").sort_index()
    assert list(labels.index) == list(truth.index)
    assert (labels["churn"] == truth["churned_90d"].astype(int)).all()
    assert (labels["upsell"] == truth["expanded_90d"].astype(int)).all()


# The sd of the realised churn count over its independent-Bernoulli sd, measured
# over 150 generated 10,000 x 36 portfolios (1.0-1.3 by snapshot): industry shocks
# inside the 90-day window make an industry's accounts churn together. For churned
# ARR the ratio is 1.0 (benchmarks.quality --part synthetic-oracle).
CHANCE_SD_INFLATION = 1.3


def test_true_churn_probability_is_unbiased_at_the_last_labelled_snapshot() -> None:
    """No end-of-data artefact: at the last snapshot whose 90-day window is observed,
    the realised churn (count and ARR) matches the oracle's expectation within
    4 chance sds, pooled over four portfolios (the evaluation snapshot of training)."""
    realised = expected = variance = 0.0
    realised_arr = expected_arr = variance_arr = 0.0
    for seed in range(4):
        truth = generate_portfolio(
            GeneratorSettings(n_accounts=10_000, months=12, seed=seed)
        ).ground_truth
        labelled = truth[truth["churned_90d"].notna()]
        last = labelled[labelled["month"] == labelled["month"].max()]
        assert last["month"].iloc[0] == pd.Timestamp("2023-10-01")
        churned = last["churned_90d"].astype(bool).to_numpy(dtype=float)
        p = last["p_churn_true"].to_numpy(dtype=float)
        arr = last["arr"].to_numpy(dtype=float)
        realised += churned.sum()
        expected += p.sum()
        variance += np.sum(p * (1 - p))
        realised_arr += np.sum(churned * arr)
        expected_arr += np.sum(p * arr)
        variance_arr += np.sum(p * (1 - p) * arr**2)
    # about 1,150 expected churns: 4 sds is 13% of them; the ARR's 4 sds are about 45%
    assert abs(realised - expected) <= 4 * CHANCE_SD_INFLATION * math.sqrt(variance)
    assert abs(realised_arr - expected_arr) <= 4 * math.sqrt(variance_arr)
