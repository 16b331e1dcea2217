"""training.compare and training.backtest on small hand-made data and models.

Two models on the same rows: one fitted on the signal, one on noise. What the
comparison, the gate preview and the backtest report is checked against
`evaluate_binary` / `calibration_bins` on the same rows and against the
known better model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.backtest import backtest_dates, fixed_models, run_backtest
from training.compare import compare_models, gate_preview
from training.metrics import calibration_bins, evaluate_binary
from training.model import CalibratedBoostedClassifier
from training.pipeline import TrainingError
from training.registry import Champion, GateSettings, gate_decision

FEATURES = ["f0", "f1", "noise"]


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in FEATURES})
    frame["arr"] = rng.uniform(1_000, 50_000, size=n)
    logit = -1.0 + 1.8 * frame["f0"] - 1.2 * frame["f1"]
    frame["churn"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    frame["upsell"] = (rng.random(n) < 1 / (1 + np.exp(1.0 + frame["f1"]))).astype("int64")
    return frame


def _model(frame: pd.DataFrame, label: str, columns: list[str], **metadata) -> Champion:
    model = CalibratedBoostedClassifier(
        n_estimators=30, num_leaves=7, n_jobs=1, calibration="platt"
    ).fit(frame[columns], frame[label], metadata=metadata)
    return Champion(f"{label}-{'+'.join(columns)}", "7", model, None, dict(metadata))


@pytest.fixture(scope="module")
def fitted() -> dict[str, Champion]:
    train = _rows(1500, seed=1)
    return {
        "good": _model(train, "churn", ["f0", "f1", "arr"], evaluation_as_of="2024-02-01"),
        "bad": _model(train, "churn", ["noise"]),
        "upsell": _model(train, "upsell", ["f1", "noise"], evaluation_as_of="2024-02-01"),
    }


@pytest.fixture(scope="module")
def evaluation() -> pd.DataFrame:
    rows = _rows(600, seed=2)
    rows.insert(0, "account_id", pd.Series([f"A{i}" for i in range(len(rows))], dtype="str"))
    return rows


# ------------------------------------------------------------------ comparison


def test_comparison_scores_every_model_on_the_same_rows(fitted, evaluation):
    comparison = compare_models(
        "churn",
        evaluation[["account_id"]],
        evaluation[[*FEATURES, "arr"]],
        evaluation["churn"].to_numpy(),
        {"challenger": fitted["good"], "champion v7": fitted["bad"]},
        evaluation="test rows",
    )
    assert comparison.models == ("challenger", "champion v7")
    assert list(comparison.rows["account_id"]) == list(evaluation["account_id"])
    y = evaluation["churn"].to_numpy(dtype=float)
    for name, champion in [("challenger", fitted["good"]), ("champion v7", fitted["bad"])]:
        p = champion.model.predict_proba(evaluation)
        np.testing.assert_allclose(comparison.scores[name], p)
        expected = evaluate_binary(y, p, evaluation["arr"])
        assert comparison.metrics.loc[name].to_dict() == pytest.approx(expected, nan_ok=True)
    # churn carries the ARR figures; the model fitted on the signal ranks better
    assert "predicted_arr_at_risk" in comparison.metrics.columns
    assert comparison.metrics.loc["challenger", "roc_auc"] > 0.75
    assert comparison.metrics.loc["champion v7", "roc_auc"] < 0.6
    np.testing.assert_array_equal(comparison.labels, y)
    assert comparison.versions == {"challenger": "7", "champion v7": "7"}


def test_largest_disagreements_between_two_models(fitted, evaluation):
    comparison = compare_models(
        "churn",
        evaluation[["account_id"]],
        evaluation,
        evaluation["churn"].to_numpy(),
        {"good": fitted["good"], "bad": fitted["bad"]},
    )
    top = comparison.largest_disagreements(3)
    gaps = (comparison.rows["good"] - comparison.rows["bad"]).abs()
    assert list(top["difference"].abs()) == sorted(gaps, reverse=True)[:3]
    assert (top["difference"] == top["good"] - top["bad"]).all()
    single = compare_models(
        "churn",
        evaluation[["account_id"]],
        evaluation,
        evaluation["churn"].to_numpy(),
        {"good": fitted["good"]},
    )
    with pytest.raises(ValueError, match="two models"):
        single.largest_disagreements()


def test_upsell_comparison_has_no_arr_figures(fitted, evaluation):
    comparison = compare_models(
        "upsell",
        evaluation[["account_id"]],
        evaluation,
        evaluation["upsell"].to_numpy(),
        {"challenger": fitted["upsell"]},
    )
    assert "predicted_arr_at_risk" not in comparison.metrics.columns
    assert "arr" not in comparison.rows.columns


def test_comparison_refuses_mismatched_rows_and_clashing_names(fitted, evaluation):
    with pytest.raises(ValueError, match="differ in length"):
        compare_models(
            "churn",
            evaluation[["account_id"]],
            evaluation.iloc[:10],
            evaluation["churn"].to_numpy(),
            {"a": fitted["good"]},
        )
    with pytest.raises(ValueError, match="clash"):
        compare_models(
            "churn",
            evaluation[["account_id"]],
            evaluation,
            evaluation["churn"].to_numpy(),
            {"label": fitted["good"]},
        )
    with pytest.raises(ValueError, match="no model"):
        compare_models("churn", evaluation, evaluation, evaluation["churn"].to_numpy(), {})


def test_gate_preview_is_the_registry_decision(fitted, evaluation):
    def compared(candidate: Champion, champion: Champion | None):
        models = {"challenger": candidate}
        if champion is not None:
            models["champion v3"] = champion
        return compare_models(
            "churn",
            evaluation[["account_id"]],
            evaluation,
            evaluation["churn"].to_numpy(),
            models,
            evaluation="test rows",
        )

    better = compared(fitted["good"], fitted["bad"])
    decision = gate_preview(better)
    assert decision.promote
    figures = better.metrics
    assert decision == gate_decision(
        {k: figures.loc["challenger", k] for k in ("roc_auc", "brier")},
        {k: figures.loc["champion v3", k] for k in ("roc_auc", "brier")},
        "7",
        "7",
        GateSettings(),
        "test rows",
    )
    worse = gate_preview(compared(fitted["bad"], fitted["good"]))
    assert not worse.promote and "ROC-AUC lower" in worse.reason
    alone = gate_preview(compared(fitted["good"], None))
    assert alone.promote and alone.reason == "no champion yet"
    with pytest.raises(ValueError, match="not one of"):
        gate_preview(better, candidate="nobody")


# ------------------------------------------------------------------ backtest


def _monthly(first: str, last: str) -> list[pd.Timestamp]:
    return list(pd.date_range(first, last, freq="MS"))


def test_backtest_dates_step_back_from_the_latest():
    dates = _monthly("2023-04-01", "2024-10-01")
    assert backtest_dates(dates, 90, count=4, step=3) == [
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-04-01"),
        pd.Timestamp("2024-07-01"),
        pd.Timestamp("2024-10-01"),
    ]
    # 2023-07-01 has only 2023-04-01 labelled by it (90 days): too little to train on
    assert backtest_dates(dates, 90, count=10, step=3)[0] == pd.Timestamp("2023-10-01")


def test_backtest_dates_on_too_short_data_is_a_clear_error():
    with pytest.raises(TrainingError, match="too short for a backtest"):
        backtest_dates(_monthly("2023-04-01", "2023-08-01"), 90)
    with pytest.raises(ValueError):
        backtest_dates(_monthly("2023-04-01", "2024-08-01"), 90, count=0)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    parts = []
    for seed, day in [(3, "2024-01-01"), (4, "2024-02-01")]:
        rows = _rows(400, seed)
        rows.insert(0, "as_of", pd.Timestamp(day).as_unit("ns"))
        rows.insert(0, "account_id", pd.Series([f"A{i}" for i in range(400)], dtype="str"))
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def test_backtest_compares_each_date_with_its_outcomes(fitted, panel):
    models = fixed_models({"churn": fitted["good"], "upsell": fitted["upsell"]})
    dates = [pd.Timestamp("2024-02-01"), pd.Timestamp("2024-01-01")]
    result = run_backtest(panel, dates, models, n_bins=5)

    assert len(result.predictions) == len(panel)
    summary = result.summary.set_index(["as_of", "target"])
    assert list(summary.index.get_level_values("as_of").unique()) == sorted(dates)
    for day in dates:
        rows = panel[panel["as_of"] == day]
        y = rows["churn"].to_numpy(dtype=float)
        p = fitted["good"].model.predict_proba(rows)
        expected = evaluate_binary(y, p, rows["arr"])
        churn = summary.loc[(day, "churn")]
        assert churn["roc_auc"] == pytest.approx(expected["roc_auc"])
        assert churn["predicted_arr_at_risk"] == pytest.approx(np.sum(p * rows["arr"]))
        assert churn["realised_churned_arr"] == pytest.approx(np.sum(y * rows["arr"]))
        assert churn["n_rows"] == len(rows)
        assert np.isnan(summary.loc[(day, "upsell"), "predicted_arr_at_risk"])
        bins = result.calibration[
            (result.calibration["as_of"] == day) & (result.calibration["target"] == "churn")
        ]
        assert bins["count"].tolist() == [b["count"] for b in calibration_bins(y, p, 5)]
    # the models were evaluated at 2024-02-01: only that date is after their training data
    assert summary.loc[(pd.Timestamp("2024-01-01"), "churn"), "out_of_time"] == False  # noqa: E712
    assert summary.loc[(pd.Timestamp("2024-02-01"), "churn"), "out_of_time"] == True  # noqa: E712
    assert set(result.predictions["churn_model"]) == {"churn-f0+f1+arr v7"}


def test_backtest_needs_rows_and_models_at_every_date(fitted, panel):
    churn_only = fixed_models({"churn": fitted["good"]})
    with pytest.raises(TrainingError, match="no upsell model"):
        run_backtest(panel, [pd.Timestamp("2024-01-01")], churn_only)
    with pytest.raises(TrainingError, match="no rows at backtest date"):
        run_backtest(panel, [pd.Timestamp("2023-12-01")], churn_only, targets=("churn",))
    unknown_age = fixed_models({"churn": fitted["bad"]})
    result = run_backtest(panel, [pd.Timestamp("2024-01-01")], unknown_age, targets=("churn",))
    assert result.summary["out_of_time"].isna().all()  # no evaluation date in its metadata
