"""Flat tables: label parsing, numeric text with blanks, identifiers, and a Telco slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.flat_table import TableError, parse_labels, prepare_flat_table
from training.pipeline import TrainingSettings, train_from_table
from training.tuning import TuningSettings

TELCO = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "telco"
    / "Telco-Customer-Churn.csv"
)


def test_labels_yes_no_true_false_and_numbers():
    values = pd.Series(["Yes", "no", " TRUE ", "false", "1", "0", "Y", "n"])
    np.testing.assert_array_equal(parse_labels(values, "Churn"), [1, 0, 1, 0, 1, 0, 1, 0])
    assert parse_labels(pd.Series([1, 0, 1]), "y").tolist() == [1, 0, 1]


def test_bad_labels_name_the_column_and_lines():
    with pytest.raises(TableError, match=r"'Churn'.*maybe.*lines 3"):
        parse_labels(pd.Series(["Yes", "maybe", "No"]), "Churn")
    with pytest.raises(TableError, match="empty on 1 row"):
        parse_labels(pd.Series(["Yes", None, "No"]), "Churn")
    with pytest.raises(TableError, match="single class"):
        parse_labels(pd.Series(["No", "No"]), "Churn")


def _frame() -> pd.DataFrame:
    n = 40
    return pd.DataFrame(
        {
            "id": [f"C{i:03d}" for i in range(n)],
            "total": [" " if i in (3, 7) else f"{i * 10.5}" for i in range(n)],
            "plan": ["basic" if i % 2 else "pro" for i in range(n)],
            "note": [f"free text {i}" for i in range(n)],
            "tenure": list(range(n)),
            "churned": ["Yes" if i % 3 == 0 else "No" for i in range(n)],
        }
    )


def test_prepare_reports_coercions_and_identifiers():
    table = prepare_flat_table(_frame(), "id", "churned", path="t.csv")
    assert list(table.X.columns) == ["total", "plan", "tenure"]
    assert table.X["total"].dtype == "float64"
    assert table.X["total"].isna().sum() == 2 and table.X["total"].iloc[4] == 42.0
    notes = {n.column: n for n in table.report.notes}
    assert notes["total"].action == "coerced" and "lines 5, 9" in notes["total"].detail
    assert notes["note"].action == "ignored"
    assert table.y.sum() == 14
    assert table.ids.iloc[0] == "C000"


def test_prepare_rejects_duplicates_and_unknown_columns():
    frame = _frame()
    frame.loc[5, "id"] = "C000"
    with pytest.raises(TableError, match=r"repeats 1 id.*C000.*lines 2, 7"):
        prepare_flat_table(frame, "id", "churned")
    with pytest.raises(TableError, match="label column 'Churn' not in"):
        prepare_flat_table(_frame(), "id", "Churn")


def test_scoring_layout_uses_model_columns_and_marks_absent_ones():
    table = prepare_flat_table(
        _frame().drop(columns=["churned"]), "id", None, feature_columns=["total", "seats"]
    )
    assert list(table.X.columns) == ["total"]
    assert [(n.column, n.action) for n in table.report.notes][-1] == ("seats", "missing")


@pytest.mark.skipif(not TELCO.is_file(), reason="shared Telco data not present")
def test_train_from_table_on_a_telco_slice(tmp_path):
    frame = pd.read_csv(TELCO).sample(n=1500, random_state=1)
    settings = TrainingSettings(
        tuning=TuningSettings(n_trials=3, timeout_seconds=None, cv_folds=3), track=False
    )
    result = train_from_table(frame, "customerID", "Churn", "churn", settings)
    churn = result.targets["churn"]
    assert churn.data["rows_evaluation"] == 300 and churn.data["rows_train"] == 1200
    assert churn.metrics["roc_auc"] > 0.75  # Telco is easy to rank; 0.5 would be chance
    assert churn.metrics["ece"] < 0.1
    assert churn.baselines["logistic"]["roc_auc"] > 0.75
    assert churn.baselines["health_score"].startswith("not applicable")
    assert "TotalCharges" in {n.column for n in result.table_notes}
    assert churn.model.metadata_["source_kind"] == "table"
    assert churn.model.calibrator_["fitted_on"].startswith("out-of-fold")
