"""`portfolio features` on a generated portfolio and on the CDNOW and RavenStack example mappings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import FEATURES, build_account_features, build_training_panel, data_period
from features.sources import load_sources
from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio
from serving.cli import app
from serving.cli import commands as _commands  # noqa: F401  (registers the subcommands)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DATA = REPO.parent / "shared" / "data"

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def text(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module", params=["saas", "orders"])
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = GeneratorSettings(n_accounts=150, months=15, seed=7, kind=request.param)
    return write_portfolio(generate_portfolio(settings), tmp_path_factory.mktemp(request.param))


def test_features_command_writes_the_snapshot_of_a_generated_portfolio(
    generated: Path, tmp_path: Path
) -> None:
    out = tmp_path / "nested" / "features.parquet"
    result = invoke("features", "--sources", str(generated), "--out", str(out))
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(out)
    loaded = load_sources(generated)
    last_day = data_period(loaded.tables).last_day
    expected = build_account_features(loaded.tables, last_day)
    pd.testing.assert_frame_equal(written, expected)
    assert f"{len(expected):,} accounts active" in text(result)
    assert "usage" in result.output or "orders" in result.output  # rows per source
    assert "features" in result.output and "s," in result.output  # timings
    assert not list(out.parent.glob(".*.tmp"))  # no temporary file left behind

    earlier = tmp_path / "earlier.parquet"
    day = (last_day - pd.Timedelta(days=200)).strftime("%Y-%m-%d")
    assert (
        invoke(
            "features", "--sources", str(generated), "--as-of", day, "--out", str(earlier)
        ).exit_code
        == 0
    )
    assert (pd.read_parquet(earlier)["as_of"] == pd.Timestamp(day)).all()


def test_generated_portfolio_features_are_plausible(generated: Path) -> None:
    tables = load_sources(generated).tables
    period = data_period(tables)
    features = build_account_features(tables, period.last_day)
    assert features["account_id"].is_unique and (features["arr"] > 0).all()
    numeric = [c for c in features.columns[2:] if FEATURES[c].kind == "numeric"]
    assert not features[numeric].isin([float("inf"), float("-inf")]).any().any()
    panel = build_training_panel(tables, [period.last_day - pd.Timedelta(days=120)], 90)
    assert set(panel["churn"].unique()) <= {0, 1} and len(panel) > 0


def test_features_command_errors_are_clear(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    late = invoke(
        "features", "--sources", str(generated), "--as-of", "2099-01-01", "--out", str(out)
    )
    assert late.exit_code == 1 and "after the last date" in text(late)
    early = invoke(
        "features", "--sources", str(generated), "--as-of", "1990-01-01", "--out", str(out)
    )
    assert early.exit_code == 1 and "before all data" in text(early)
    bad = invoke("features", "--sources", str(generated), "--as-of", "someday", "--out", str(out))
    assert bad.exit_code == 1 and "not a date" in text(bad)
    missing = invoke("features", "--sources", str(tmp_path / "nope.yaml"), "--out", str(out))
    assert missing.exit_code == 1 and "does not exist" in text(missing)
    assert not out.exists()


def test_features_command_refuses_sources_with_validation_errors(tmp_path: Path) -> None:
    (tmp_path / "subs.csv").write_text(
        "account_id,start_date,end_date,arr\nA1,2023-01-01,,100\nA2,2023-05-01,2023-01-01,-50\n"
    )
    sources = tmp_path / "sources.yaml"
    sources.write_text("name: bad\ntables:\n  subscriptions: {path: subs.csv}\n")
    result = invoke("features", "--sources", str(sources), "--out", str(tmp_path / "f.parquet"))
    assert result.exit_code == 1
    assert "negative" in result.output.lower() or "end_date" in result.output


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the repository")
def test_features_command_on_cdnow(tmp_path: Path) -> None:
    out = tmp_path / "cdnow.parquet"
    result = invoke(
        "features",
        "--sources",
        str(EXAMPLES / "cdnow" / "sources.yaml"),
        "--as-of",
        "1997-12-31",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    features = pd.read_parquet(out)
    # customers with revenue in the 365 days up to 1997-12-31 (all were acquired in Q1 1997)
    orders = load_sources(EXAMPLES / "cdnow" / "sources.yaml").tables["orders"]
    known = orders[orders["date"] <= "1997-12-31"]
    revenue = known.groupby("account_id")["amount"].sum()
    assert len(features) == int((revenue > 1e-9).sum())
    assert set(features.columns) >= {"order_recency_days", "order_gap_cv", "arr_change_90d"}
    # no CRM table: the loader derives accounts from the order ids, firmographics are unknown
    assert features["segment"].isna().all() and features["parent_arr_share"].isna().all()
    assert features["order_frequency_365d"].min() >= 1


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the repository")
def test_features_command_on_ravenstack(tmp_path: Path) -> None:
    out = tmp_path / "ravenstack.parquet"
    sources = EXAMPLES / "ravenstack" / "sources.yaml"
    result = invoke(
        "features", "--sources", str(sources), "--as-of", "2024-06-30", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    features = pd.read_parquet(out)
    subscriptions = load_sources(sources).tables["subscriptions"]
    t = pd.Timestamp("2024-06-30")
    active = subscriptions[
        (subscriptions["start_date"] <= t)
        & (subscriptions["end_date"].isna() | (subscriptions["end_date"] > t))
    ]
    arr = active.groupby("account_id")["arr"].sum()
    expected = arr[arr > 0]
    assert len(features) == len(expected)
    pd.testing.assert_series_equal(
        features.set_index("account_id")["arr"].sort_index(),
        expected.sort_index().rename("arr"),
        check_index_type=False,
    )
    # usage is per account and day with events only: activity and event trends exist
    assert features["days_since_last_activity"].notna().mean() > 0.9
    assert features["seat_utilisation_28d"].isna().all()  # RavenStack has no active users
    assert features["support_tickets_90d"].sum() > 0
    assert features["industry"].notna().all()
    assert features["parent_arr_share"].isna().all()  # no parents mapped: unknown, not 100%
