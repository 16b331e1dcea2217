"""CalibratedBoostedClassifier: fit, score, save/load without pickle, categorical handling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from training.model import (
    BOOSTER_FILE,
    MODEL_JSON_FILE,
    CalibratedBoostedClassifier,
    apply_calibrator,
)
from training.reference import feature_psi, score_psi


def _frame(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "usage": rng.normal(size=n),
            "tickets": rng.poisson(2, size=n).astype(float),
            "segment": pd.Series(rng.choice(["smb", "mid", "ent"], size=n), dtype="str"),
            "late": rng.random(n) < 0.2,
        }
    )
    X.loc[X.index[::11], "segment"] = None
    X.loc[X.index[::13], "usage"] = np.nan
    logit = -1.0 - 1.2 * X["usage"].fillna(0) + 0.3 * X["tickets"] + (X["segment"] == "smb") * 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y.to_numpy()


@pytest.fixture(scope="module")
def fitted() -> tuple[CalibratedBoostedClassifier, pd.DataFrame, np.ndarray]:
    X, y = _frame()
    model = CalibratedBoostedClassifier(n_estimators=60, num_leaves=15).fit(
        X.iloc[:1000], y[:1000], X.iloc[1000:], y[1000:], metadata={"target": "churn"}
    )
    return model, X, y


def test_fit_learns_attributes_and_scores_in_unit_interval(fitted):
    model, X, _ = fitted
    assert model.feature_names_ == ["usage", "tickets", "segment", "late"]
    assert model.categories_ == {"segment": ["ent", "mid", "smb"]}
    assert model.calibrator_["method"] in {"isotonic", "platt"}
    assert model.calibrator_["fitted_on"] == "calibration rows"
    p = model.predict_proba(X)
    assert p.shape == (len(X),)
    assert np.all((p > 0) & (p < 1))
    assert model.metadata_ == {"target": "churn"}


def test_sklearn_contract():
    model = CalibratedBoostedClassifier(n_estimators=7, calibration="platt")
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict_proba(pd.DataFrame({"a": [1.0]}))


def test_save_load_round_trip_is_exact_and_pickle_free(fitted, tmp_path):
    model, X, _ = fitted
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == [BOOSTER_FILE, MODEL_JSON_FILE]
    assert not list(tmp_path.rglob("*.pkl"))
    state = json.loads((tmp_path / "m" / MODEL_JSON_FILE).read_text())
    assert state["categories"] == {"segment": ["ent", "mid", "smb"]}
    assert state["metadata"] == {"target": "churn"}

    loaded = CalibratedBoostedClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.raw_score(X), model.raw_score(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        loaded.contributions(X.head(50)), model.contributions(X.head(50)), rtol=0, atol=1e-12
    )
    assert loaded.get_params() == model.get_params()
    assert loaded.reference_ == model.reference_


def test_categorical_codes_unseen_and_missing_levels(fitted):
    model, _, _ = fitted
    rows = pd.DataFrame(
        {
            "usage": [0.5, 0.5, 0.5, 0.5],
            "tickets": [1.0, 1.0, 1.0, 1.0],
            "segment": pd.Series(["mid", "never-seen", None, "ent"], dtype="str"),
            "late": [False, False, False, True],
        }
    )
    matrix = model.prepare(rows)
    np.testing.assert_array_equal(matrix[:, 2], [1.0, np.nan, np.nan, 0.0])
    np.testing.assert_array_equal(matrix[:, 3], [0.0, 0.0, 0.0, 1.0])
    p = model.predict_proba(rows)
    assert p[1] == p[2]  # an unseen level scores exactly like a missing one


def test_record_path_matches_frame_path(fitted):
    model, X, _ = fitted
    head = X.head(25)
    records = [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in head.to_dict("records")
    ]
    np.testing.assert_array_equal(model.prepare(records), model.prepare(head))
    single = model.prepare(records[0])
    assert single.shape == (1, 4)
    np.testing.assert_array_equal(model.predict_proba(records), model.predict_proba(head))


def test_absent_columns_are_missing_and_extra_keys_ignored(fitted):
    model, _, _ = fitted
    full = model.predict_proba({"usage": None, "tickets": 2, "segment": "smb", "late": None})
    partial = model.predict_proba({"tickets": 2, "segment": "smb", "account_id": "A1"})
    assert full[0] == partial[0]
    frame = model.prepare(pd.DataFrame({"tickets": [2.0]}))
    assert np.isnan(frame[0, [0, 2, 3]]).all() and frame[0, 1] == 2.0


def test_non_numeric_values_raise_naming_the_column(fitted):
    model, _, _ = fitted
    with pytest.raises(ValueError, match="'tickets'"):
        model.prepare(pd.DataFrame({"tickets": ["3", "lots"]}))
    with pytest.raises(ValueError, match="'usage'"):
        model.prepare({"usage": "high"})


def test_contributions_sum_to_raw_score(fitted):
    model, X, _ = fitted
    contrib = model.contributions(X.head(40))
    assert contrib.shape == (40, 5)
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_score(X.head(40)), atol=1e-9)


def test_out_of_fold_calibration_without_calibration_rows():
    X, y = _frame(800, seed=3)
    model = CalibratedBoostedClassifier(n_estimators=30, calibration="isotonic").fit(X, y)
    assert model.calibrator_["method"] == "isotonic"
    assert model.calibrator_["fitted_on"].startswith("out-of-fold")
    raw = np.linspace(-5, 5, 200)
    p = apply_calibrator(model.calibrator_, raw)
    assert np.all(np.diff(p) >= 0)  # isotonic: monotone in the raw score


def test_labels_are_validated():
    X, _ = _frame(50)
    with pytest.raises(ValueError, match="single class"):
        CalibratedBoostedClassifier(n_estimators=5).fit(X, np.zeros(50))
    with pytest.raises(ValueError, match="0/1"):
        CalibratedBoostedClassifier(n_estimators=5).fit(X, np.full(50, 2))
    with pytest.raises(ValueError, match="rows"):
        CalibratedBoostedClassifier(n_estimators=5).fit(X, np.zeros(49))


def test_reference_distribution_and_psi(fitted):
    model, X, _ = fitted
    reference = model.reference_
    usage = reference["features"]["usage"]
    assert usage["kind"] == "numeric"
    assert sum(usage["proportions"]) == pytest.approx(1.0)
    assert usage["missing"] == pytest.approx(X["usage"].iloc[:1000].isna().mean())
    assert reference["features"]["segment"]["kind"] == "categorical"
    matrix = model.prepare(X.iloc[:1000])
    assert feature_psi(usage, matrix[:, 0]) == pytest.approx(0.0, abs=1e-12)
    shifted = matrix[:, 0] + 2.0
    assert feature_psi(usage, shifted) > 0.25
    scores = model.predict_proba(X.iloc[1000:])
    assert score_psi(reference, scores) == pytest.approx(0.0, abs=1e-12)
