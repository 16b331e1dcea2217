"""`portfolio train / score --table / models / promote` end to end on small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio
from serving.cli import app
from serving.cli import commands as _commands  # noqa: F401  (registers the subcommands)

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def text(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PORTFOLIO_MODEL_PREFIX", raising=False)
    return uri


def _crm_export(path: Path, n: int = 900, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    usage = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "AccountId": [f"A{i:04d}" for i in range(n)],
            "Seats": rng.integers(1, 50, n),
            "Usage": usage,
            # numbers stored as text with a few blanks, like Telco's TotalCharges
            "Spend": [
                " " if i % 97 == 0 else f"{v:.2f}" for i, v in enumerate(rng.gamma(2, 100, n))
            ],
            "Tier": rng.choice(["gold", "silver", "bronze"], n),
        }
    )
    risk = 1 / (1 + np.exp(-(-1.2 - 1.5 * usage + (frame["Tier"] == "bronze"))))
    frame["Churned"] = np.where(rng.random(n) < risk, "Yes", "No")
    frame.to_csv(path, index=False)
    return path


def test_argument_errors_are_messages_not_tracebacks(tmp_path, store):
    both = invoke("train", "--sources", "a.yaml", "--table", "b.csv")
    assert both.exit_code == 1 and "exactly one of --sources" in text(both)
    no_label = invoke("train", "--table", "b.csv", "--id", "x")
    assert no_label.exit_code == 1 and "--label" in text(no_label)
    csv = _crm_export(tmp_path / "crm.csv", n=60)
    wrong = invoke("train", "--table", str(csv), "--id", "AccountId", "--label", "Churn")
    assert wrong.exit_code == 1
    assert "label column 'Churn' not in crm.csv" in text(wrong)


@pytest.mark.slow
def test_train_table_then_score_models_promote(tmp_path, store):
    csv = _crm_export(tmp_path / "crm.csv")
    nothing = invoke(
        "score", "--table", str(csv), "--id", "AccountId", "--out", str(tmp_path / "o")
    )
    assert nothing.exit_code == 1 and "no champion" in text(nothing)
    args = (
        "train",
        "--table",
        str(csv),
        "--id",
        "AccountId",
        "--label",
        "Churned",
        "--trials",
        "2",
    )
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    out = text(first)
    assert "Spend: coerced" in out and "ROC-AUC" in out and "logistic" in out
    assert "@champion -> v1" in out

    second = invoke(*args, "--seed", "1")
    assert second.exit_code == 0, second.output
    assert "registered churn version 2" in text(second)
    assert "@champion -> v2" in text(second) or "not promoted" in text(second)

    listing = invoke("models")
    assert listing.exit_code == 0 and "@champion" in listing.output and "churn" in listing.output

    rolled = invoke("promote", "--target", "churn", "--version", "1", "--reason", "rollback test")
    assert rolled.exit_code == 0 and "@champion -> version 1" in text(rolled)
    missing = invoke("promote", "--target", "churn", "--version", "9")
    assert missing.exit_code == 1 and "no version '9'" in text(missing)

    scored = invoke("score", "--table", str(csv), "--id", "AccountId", "--out", str(tmp_path / "s"))
    assert scored.exit_code == 0, scored.output
    scores = pd.read_parquet(tmp_path / "s" / "scores.parquet")
    assert list(scores.columns) == ["account_id", "p_churn", "churn_model_version"]
    assert len(scores) == 900 and scores["account_id"].is_unique
    assert set(scores["churn_model_version"]) == {"1"}
    assert scores["p_churn"].between(0, 1).all()


@pytest.mark.slow
def test_train_sources_on_a_generated_portfolio(tmp_path, store):
    settings = GeneratorSettings(n_accounts=250, months=24, seed=5)
    sources = write_portfolio(generate_portfolio(settings), tmp_path / "portfolio")
    result = invoke("train", "--sources", str(sources), "--trials", "2", "--timeout", "60")
    assert result.exit_code == 0, result.output
    out = text(result)
    assert "churn: evaluation on snapshot" in out and "upsell: evaluation on snapshot" in out
    assert "health_score" in out and "logistic" in out
    assert "@champion -> v1" in out
    early = invoke("train", "--sources", str(sources), "--as-of", "2023-03-01")
    assert early.exit_code == 1 and "labelled snapshot" in text(early)
