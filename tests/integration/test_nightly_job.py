"""The nightly job end to end on a small generated portfolio with freshly trained champions.

The session fixtures (tests/conftest.py) generate a 300-account portfolio,
train both models quickly into a temporary MLflow store and point
MLFLOW_TRACKING_URI at it. Each test writes its runs under its own temp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from service_harness import OUTPUT_FILES, run_output_bytes
from typer.testing import CliRunner

import serving.batch as batch
from features.build import build_account_features, data_period
from features.sources import load_sources
from serving.batch import JobInputError, NightlyJobError, NightlyJobSettings, run_nightly_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DESIGN_SCORE_COLUMNS = (
    "account_id",
    "as_of",
    "p_churn",
    "p_upsell",
    "arr",
    "expected_arr_at_risk",
    "expected_expansion",
    "priority",
    "tier",
    "reasons",
    "churn_model_version",
    "upsell_model_version",
)
PORTFOLIO_KEYS = (
    "as_of",
    "arr_total",
    "weighted_churn_risk",
    "weighted_churn_risk_band",
    "concentration_top10",
    "coverage_by_segment",
    "nrr_realised",
    "nrr_forecast",
    "pipeline_velocity",
    "alerts",
    "tiers",
    "allocation",
    "movers",
)


def _visible(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if not p.name.endswith(".lock"))


@pytest.fixture(autouse=True)
def _champions(champion_store: str) -> str:
    """Every test here scores with the session's champions."""
    return champion_store


@pytest.fixture(scope="module")
def first_run(nightly_sources: Path, champion_store: str, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "latest"
    run_nightly_job(nightly_sources, out_dir=out)
    return out


def test_every_output_is_written_and_accounts_add_up(
    first_run: Path, nightly_sources: Path
) -> None:
    assert sorted(p.name for p in first_run.iterdir()) == sorted(OUTPUT_FILES)
    scores = pd.read_parquet(first_run / "scores.parquet")
    rejected = pd.read_parquet(first_run / "rejected.parquet")
    manifest = json.loads((first_run / "manifest.json").read_text())
    tables = load_sources(nightly_sources).tables
    active = build_account_features(tables, data_period(tables).last_day)

    assert len(scores) + len(rejected) == len(active) == manifest["row_counts"]["active_accounts"]
    assert set(scores["account_id"]) | set(rejected["account_id"]) == set(active["account_id"])
    assert scores["account_id"].is_unique and scores["account_id"].is_monotonic_increasing
    for column in DESIGN_SCORE_COLUMNS:
        assert column in scores.columns, column
    assert pd.api.types.is_string_dtype(scores["account_id"])
    assert ((scores["p_churn"] > 0) & (scores["p_churn"] < 1)).all()
    pd.testing.assert_series_equal(
        scores["expected_arr_at_risk"], scores["p_churn"] * scores["arr"], check_names=False
    )
    assert scores["churn_model_version"].eq(manifest["models"]["churn"]["version"]).all()

    features = pd.read_parquet(first_run / "features.parquet")
    assert list(features["account_id"]) == list(scores["account_id"])

    summary = json.loads((first_run / "portfolio.json").read_text())
    for key in PORTFOLIO_KEYS:
        assert key in summary, key
    assert summary["as_of"] == manifest["as_of"]
    assert summary["arr_total"] == pytest.approx(scores["arr"].sum())
    assert summary["drift"]["models"].keys() == {"churn", "upsell"}
    assert set(manifest["input_fingerprints"]) >= {"accounts", "subscriptions"}
    assert set(manifest["timings"]["stages_seconds"]) >= {"load", "features", "score", "report"}


def test_reasons_read_in_pandas_and_duckdb(first_run: Path) -> None:
    scores = pd.read_parquet(first_run / "scores.parquet")
    first = list(scores["reasons"].iloc[0])
    assert {r["model"] for r in first} == {"churn", "upsell"}
    assert {"model", "rank", "feature", "value", "contribution", "text"} <= set(first[0])
    rows = duckdb.sql(
        f"SELECT account_id, r.model, r.rank, r.text FROM "
        f"read_parquet('{first_run / 'scores.parquet'}'), UNNEST(reasons) AS t(r) "
        "WHERE r.model = 'churn' AND r.rank = 1"
    ).fetchall()
    assert len(rows) == len(scores)
    assert all(text for _, _, _, text in rows)


def test_a_rerun_is_byte_identical(first_run: Path, nightly_sources: Path, tmp_path: Path) -> None:
    before = run_output_bytes(first_run)
    copy = tmp_path / "runs" / first_run.name
    shutil.copytree(first_run, copy)
    run_nightly_job(nightly_sources, out_dir=copy)
    assert run_output_bytes(copy) == before


def test_a_failure_late_in_the_job_leaves_the_previous_output(
    first_run: Path, nightly_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs" / "latest"
    shutil.copytree(first_run, out)
    before = run_output_bytes(out)

    def broken_writer(*args, **kwargs):
        raise RuntimeError("disk full while writing the report")

    with monkeypatch.context() as patch:
        patch.setattr(batch, "write_run_files", broken_writer)
        with pytest.raises(RuntimeError, match="disk full"):
            run_nightly_job(nightly_sources, out_dir=out)
    assert run_output_bytes(out) == before
    assert _visible(out.parent) == ["latest"]

    run_nightly_job(nightly_sources, out_dir=out)
    assert run_output_bytes(out) == before


KILLED_JOB = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import serving.batch as batch

    marker = Path(sys.argv[3])
    real_write_json = batch.write_json

    def slow_write_json(document, path):
        real_write_json(document, path)
        marker.write_text("writing")
        time.sleep(600)

    batch.write_json = slow_write_json
    batch.run_nightly_job(sys.argv[1], out_dir=sys.argv[2])
    """
)


def test_a_job_killed_while_writing_leaves_the_previous_output_and_a_rerun_completes(
    first_run: Path, nightly_sources: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "latest"
    shutil.copytree(first_run, out)
    before = run_output_bytes(out)
    marker = tmp_path / "writing"
    script = tmp_path / "killed_job.py"
    script.write_text(KILLED_JOB)

    process = subprocess.Popen(
        [sys.executable, str(script), str(nightly_sources), str(out), str(marker)],
        env=os.environ.copy(),
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, "the job ended before it started writing"
            assert time.monotonic() < deadline, "the job never reached the writing stage"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    # the half-written temp folder is hidden; the visible output is the previous one
    assert run_output_bytes(out) == before
    assert any(name.startswith(".latest.tmp-") for name in os.listdir(out.parent))

    run_nightly_job(nightly_sources, out_dir=out)
    assert run_output_bytes(out) == before
    assert _visible(out.parent) == ["latest"]


# --------------------------------------------------------------------------- bad input


def _copy_portfolio(nightly_sources: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "portfolio"
    shutil.copytree(nightly_sources.parent, folder)
    return folder / nightly_sources.name


@pytest.fixture
def published(first_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "runs" / "latest"
    shutil.copytree(first_run, out)
    return out


def _assert_untouched(out: Path, before: dict[str, bytes]) -> None:
    assert run_output_bytes(out) == before
    assert _visible(out.parent) == ["latest"]


def test_a_corrupted_input_file_is_bad_input(
    nightly_sources: Path, published: Path, tmp_path: Path
) -> None:
    before = run_output_bytes(published)
    sources = _copy_portfolio(nightly_sources, tmp_path)
    (sources.parent / "usage.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(JobInputError, match="usage"):
        run_nightly_job(sources, out_dir=published)
    _assert_untouched(published, before)


def test_a_missing_table_file_is_bad_input(
    nightly_sources: Path, published: Path, tmp_path: Path
) -> None:
    before = run_output_bytes(published)
    sources = _copy_portfolio(nightly_sources, tmp_path)
    (sources.parent / "subscriptions.parquet").unlink()
    with pytest.raises(JobInputError, match="subscriptions"):
        run_nightly_job(sources, out_dir=published)
    _assert_untouched(published, before)


def test_without_a_revenue_table_the_input_is_unusable(
    nightly_sources: Path, published: Path, tmp_path: Path
) -> None:
    before = run_output_bytes(published)
    sources = _copy_portfolio(nightly_sources, tmp_path)
    document = yaml.safe_load(sources.read_text())
    del document["tables"]["subscriptions"]
    sources.write_text(yaml.safe_dump(document))
    with pytest.raises(JobInputError, match="subscriptions"):
        run_nightly_job(sources, out_dir=published)
    _assert_untouched(published, before)


def test_an_as_of_beyond_the_data_is_bad_input(nightly_sources: Path, published: Path) -> None:
    before = run_output_bytes(published)
    with pytest.raises(JobInputError, match="after the last date in the data"):
        run_nightly_job(nightly_sources, as_of="2099-01-01", out_dir=published)
    _assert_untouched(published, before)


def test_no_champion_registered_fails_clearly(
    nightly_sources: Path, published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = run_output_bytes(published)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with pytest.raises(NightlyJobError, match="no champion model registered for 'churn'"):
        run_nightly_job(nightly_sources, out_dir=published)
    _assert_untouched(published, before)


def test_an_account_with_broken_values_is_rejected_with_the_reason(
    nightly_sources: Path, tmp_path: Path
) -> None:
    sources = _copy_portfolio(nightly_sources, tmp_path)
    subscriptions_path = sources.parent / "subscriptions.parquet"
    subscriptions = pd.read_parquet(subscriptions_path)
    last_day = data_period(load_sources(nightly_sources).tables).last_day
    running = subscriptions[subscriptions["end_date"].isna()]
    victim = str(running["account_id"].iloc[0])
    # two subscriptions whose ARR sum overflows to infinity: finite values, broken total
    broken = running[running["account_id"] == victim].iloc[[0, 0]].copy()
    broken["arr"] = 1.7e308
    broken["start_date"] = last_day - pd.Timedelta(days=10)
    pd.concat([subscriptions, broken], ignore_index=True).to_parquet(subscriptions_path)

    result = run_nightly_job(sources, out_dir=tmp_path / "runs" / "broken")
    rejected = pd.read_parquet(result.out_dir / "rejected.parquet")
    scores = pd.read_parquet(result.out_dir / "scores.parquet")
    row = rejected[rejected["account_id"] == victim]
    assert list(row["reason"]) == ["invalid_arr"]
    assert "inf" in row["detail"].iloc[0]
    assert victim not in set(scores["account_id"])
    assert result.scored + result.rejected == result.active


# --------------------------------------------------------------------------- earlier runs


def test_movers_and_outcomes_come_from_earlier_runs_in_the_same_folder(
    nightly_sources: Path, tmp_path: Path
) -> None:
    tables = load_sources(nightly_sources).tables
    last_day = data_period(tables).last_day
    runs = tmp_path / "runs"
    early = (last_day - pd.Timedelta(days=120)).date().isoformat()
    middle = (last_day - pd.Timedelta(days=30)).date().isoformat()
    run_nightly_job(nightly_sources, as_of=early, out_dir=runs / early)
    run_nightly_job(nightly_sources, as_of=middle, out_dir=runs / middle)
    latest = run_nightly_job(nightly_sources, out_dir=runs / last_day.date().isoformat())

    assert latest.manifest["previous_run"] == middle
    movers = latest.summary["movers"]
    assert movers  # compared with the middle run
    outcomes = latest.summary["outcomes"]
    assert outcomes["run"] == early  # the latest run whose 90-day horizon elapsed
    churn = outcomes["churn"]["metrics"]
    assert 0.0 <= churn["roc_auc"] <= 1.0
    assert churn["realised_churned_arr"] >= 0
    assert (
        outcomes["accounts_labelled"] + outcomes["accounts_without_label"]
        == outcomes["accounts_scored"]
    )
    html = (runs / last_day.date().isoformat() / "report.html").read_text()
    assert f"Run as of {early}" in html
    assert f"Compared with the run as of {middle}" in html
    section = html[html.index('id="movers"') : html.index('id="tiers"')]
    first = movers["churn"][0]
    assert f"{100 * first['current']:.1f}%" in section
    assert f"{100 * first['previous']:.1f}%" in section


def test_the_allocation_can_be_left_out_of_a_run(nightly_sources: Path, tmp_path: Path) -> None:
    result = run_nightly_job(
        nightly_sources,
        out_dir=tmp_path / "runs" / "light",
        settings=NightlyJobSettings(allocate=False),
    )
    assert result.summary["allocation"]["status"] == "skipped"
    assert "allocate = false" in result.summary["allocation"]["reason"]
    assert result.scored + result.rejected == result.active


# --------------------------------------------------------------------------- the command line


def test_the_cli_exit_codes(nightly_sources: Path, tmp_path: Path) -> None:
    from serving.cli import commands  # noqa: F401  (registers the commands)
    from serving.cli.app import app

    runner = CliRunner()
    out = tmp_path / "runs" / "cli"
    ok = runner.invoke(app, ["score", "--sources", str(nightly_sources), "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "Weighted churn risk" in ok.output and "scored" in ok.output

    bad = runner.invoke(
        app,
        ["score", "--sources", str(nightly_sources), "--as-of", "2099-01-01", "--out", str(out)],
    )
    assert bad.exit_code == 2
    assert "after the last date in the data" in bad.output
    assert "Traceback" not in bad.output

    missing = runner.invoke(
        app, ["score", "--sources", str(tmp_path / "nope.yaml"), "--out", str(out)]
    )
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
