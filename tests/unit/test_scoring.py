"""serving.scoring and serving.reasons: scores, reasons, batch == per-record."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.definitions import FEATURES
from serving.reasons import (
    PathAttributions,
    reason_entries,
    reason_sentence,
    reasons_by_model,
    top_contributions,
    value_text,
)
from serving.scoring import (
    SCORE_COLUMNS,
    ScoringInputError,
    path_attributions,
    score_accounts,
    score_matrix,
    score_records,
)
from training.model import CalibratedBoostedClassifier
from training.registry import Champion

N_ROWS = 600


def _features(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """`tenure_days` alone decides churn (short tenure churns); `seats` alone decides upsell."""
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 1000, n)
    seats = rng.uniform(1, 200, n)
    frame = pd.DataFrame(
        {
            "account_id": pd.array([f"A{i:04d}" for i in range(n)], dtype="string"),
            "as_of": pd.to_datetime(["2025-06-30"] * n).astype("datetime64[ns]"),
            "arr": rng.uniform(1_000, 100_000, n).round(2),
            "tenure_days": tenure,
            "seats": seats,
            "noise": rng.normal(size=n),
            "segment": pd.array(rng.choice(["smb", "mid-market", "enterprise"], n), dtype="string"),
        }
    )
    frame.loc[rng.random(n) < 0.1, "noise"] = np.nan
    return frame


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    churn = (frame["tenure_days"] < 300).astype(int).to_numpy()
    upsell = (frame["seats"] > 120).astype(int).to_numpy()
    return churn, upsell


FEATURE_COLUMNS = ["arr", "tenure_days", "seats", "noise", "segment"]


def _fit(y: np.ndarray, frame: pd.DataFrame, **params) -> CalibratedBoostedClassifier:
    settings = dict(
        n_estimators=40, num_leaves=7, min_child_samples=10, calibration="platt", n_jobs=1
    )
    settings.update(params)
    half = len(frame) // 2
    return CalibratedBoostedClassifier(**settings).fit(
        frame[FEATURE_COLUMNS].iloc[:half],
        y[:half],
        X_cal=frame[FEATURE_COLUMNS].iloc[half:],
        y_cal=y[half:],
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _features()


@pytest.fixture(scope="module")
def champions(frame: pd.DataFrame) -> tuple[Champion, Champion]:
    churn_y, upsell_y = _labels(frame)
    churn = Champion("portfolio-churn", "3", _fit(churn_y, frame), "run-c", {})
    upsell = Champion("portfolio-upsell", "7", _fit(upsell_y, frame), "run-u", {})
    return churn, upsell


def _reasons(row_reasons: list[dict], model: str) -> list[dict]:
    return [r for r in row_reasons if r["model"] == model]


# ------------------------------------------------------------------ the score frame


def test_score_frame_has_the_contract_columns(frame, champions):
    scores = score_accounts(frame, *champions)
    assert tuple(scores.columns) == SCORE_COLUMNS
    assert len(scores) == len(frame)
    assert scores["account_id"].tolist() == frame["account_id"].tolist()
    assert str(scores["account_id"].dtype) == "string"
    assert (scores["as_of"] == frame["as_of"]).all()
    assert scores["churn_model"].unique().tolist() == ["portfolio-churn"]
    assert scores["churn_model_version"].unique().tolist() == ["3"]
    assert scores["upsell_model_version"].unique().tolist() == ["7"]
    assert scores["arr"].tolist() == frame["arr"].tolist()
    np.testing.assert_array_equal(scores["expected_arr_at_risk"], scores["p_churn"] * frame["arr"])
    assert scores["p_churn"].between(0, 1).all() and scores["p_upsell"].between(0, 1).all()


def test_probabilities_are_the_models_own(frame, champions):
    churn, upsell = champions
    scores = score_accounts(frame, churn, upsell)
    np.testing.assert_array_equal(scores["p_churn"], churn.model.predict_proba(frame))
    np.testing.assert_array_equal(scores["p_upsell"], upsell.model.predict_proba(frame))
    # Without reasons the scores are the same numbers.
    plain = score_accounts(frame, churn, upsell, top_k=0)
    np.testing.assert_array_equal(plain["p_churn"], scores["p_churn"])
    assert all(r == [] for r in plain["reasons"])


def test_the_deciding_feature_is_the_top_reason_with_the_right_sign(frame, champions):
    scores = score_accounts(frame, *champions, top_k=3)
    short = frame["tenure_days"] < 150  # far from the 300-day boundary
    long = frame["tenure_days"] > 450
    clear_upsell = (frame["seats"] - 120).abs() > 40
    rows = zip(scores["reasons"], short, long, clear_upsell, strict=True)
    for reasons, is_short, is_long, is_clear_upsell in rows:
        churn_reasons = _reasons(reasons, "churn")
        assert churn_reasons[0]["feature"] == "tenure_days"
        assert churn_reasons[0]["rank"] == 1
        if is_short:
            assert churn_reasons[0]["contribution"] > 0  # short tenure raises churn risk
        if is_long:
            assert churn_reasons[0]["contribution"] < 0
        if is_clear_upsell:
            assert _reasons(reasons, "upsell")[0]["feature"] == "seats"
        assert [r["rank"] for r in churn_reasons] == list(range(1, len(churn_reasons) + 1))
        magnitudes = [abs(r["contribution"]) for r in churn_reasons]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_reason_text_comes_from_the_feature_metadata(frame, champions):
    scores = score_accounts(frame.head(1), *champions)
    top = _reasons(scores["reasons"].iloc[0], "churn")[0]
    tenure = float(frame["tenure_days"].iloc[0])
    assert top["value"] == format(tenure, ".6g")
    assert top["text"] == f"Customer for {tenure:,.0f} days"


def test_reasons_are_json_serialisable(frame, champions):
    scores = score_accounts(frame.head(20), *champions)
    text = json.dumps(scores["reasons"].tolist(), allow_nan=False)
    assert json.loads(text) == scores["reasons"].tolist()
    records = score_records(frame.head(5).to_dict("records"), *champions)
    for record in records:
        record["as_of"] = str(record["as_of"])
    json.dumps(records, allow_nan=False)


# ------------------------------------------------------------------ batch == per record


def test_records_give_exactly_what_the_frame_gives(frame, champions):
    sample = frame.sample(50, random_state=1).reset_index(drop=True)
    batch = score_accounts(sample, *champions)
    one_by_one = [score_records([row], *champions)[0] for row in sample.to_dict("records")]
    all_at_once = score_records(sample.to_dict("records"), *champions)
    for i, row in batch.iterrows():
        for online in (one_by_one[i], all_at_once[i]):
            assert online["account_id"] == row["account_id"]
            for column in ("p_churn", "p_upsell", "arr", "expected_arr_at_risk"):
                assert online[column] == pytest.approx(row[column], abs=1e-12, rel=0)
            assert online["reasons"] == row["reasons"]
            assert online["churn_model_version"] == row["churn_model_version"]


def test_chunks_give_the_same_as_one_call(frame, champions):
    whole = score_accounts(frame, *champions)
    parts = pd.concat(
        [score_accounts(frame.iloc[i : i + 77], *champions) for i in range(0, len(frame), 77)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(whole, parts)


# ------------------------------------------------------------------ missing and unseen values


def test_unseen_and_missing_values(frame, champions):
    churn, upsell = champions
    base = frame.head(1).to_dict("records")[0]
    unseen = {**base, "segment": "never-seen", "account_id": "U"}
    missing = {**base, "segment": None, "account_id": "M"}
    absent = {k: v for k, v in base.items() if k not in ("segment", "noise")}
    absent["account_id"] = "X"
    nan_noise = {**missing, "noise": float("nan"), "account_id": "N"}
    scored = score_records([unseen, missing, absent, nan_noise], churn, upsell, top_k=5)
    # An unseen level, None and an absent key are all "missing" to the model.
    assert scored[0]["p_churn"] == scored[1]["p_churn"]
    assert scored[2]["p_churn"] == scored[3]["p_churn"]
    for record in scored:
        for reason in record["reasons"]:
            if reason["feature"] == "segment":
                assert reason["value"] is None
                assert reason["text"] == FEATURES["segment"].describe(None)


def test_a_record_can_leave_out_as_of(frame, champions):
    record = {k: v for k, v in frame.head(1).to_dict("records")[0].items() if k != "as_of"}
    scored = score_records([record], *champions)[0]
    assert scored["as_of"] is None
    assert scored["account_id"] == "A0000"


def test_bad_arr_is_an_error_naming_the_account(frame, champions):
    bad = frame.head(3).copy()
    bad.loc[1, "arr"] = -5.0
    with pytest.raises(ScoringInputError, match="A0001"):
        score_accounts(bad, *champions)
    record = {**frame.head(1).to_dict("records")[0], "arr": None}
    with pytest.raises(ScoringInputError, match="A0000"):
        score_records([record], *champions)
    with pytest.raises(ScoringInputError, match="must be a number"):
        score_records([{**record, "arr": "lots"}], *champions)
    with pytest.raises(ScoringInputError, match="account_id"):
        score_records([{"arr": 1.0}], *champions)
    with pytest.raises(ScoringInputError, match="'arr'"):
        score_accounts(frame.drop(columns="arr"), *champions)


def test_a_non_numeric_feature_names_the_feature(frame, champions):
    record = {**frame.head(1).to_dict("records")[0], "seats": "many"}
    with pytest.raises(ValueError, match="seats"):
        score_records([record], *champions)


def test_empty_input(frame, champions):
    assert score_records([], *champions) == []
    empty = score_accounts(frame.head(0), *champions)
    assert list(empty.columns) == list(SCORE_COLUMNS) and len(empty) == 0


# ------------------------------------------------------------------ path attributions vs TreeSHAP


def test_path_attributions_add_up_to_the_raw_score(frame, champions):
    model = champions[0].model
    matrix = model.prepare(frame)
    attributions = path_attributions(model)
    leaves = model.booster_.predict(matrix, pred_leaf=True)
    raw, contributions = attributions.attribute(leaves)
    # Bit for bit what LightGBM predicts (leaf values added in tree order).
    np.testing.assert_array_equal(raw, model.booster_.predict(matrix, raw_score=True))
    np.testing.assert_allclose(
        contributions.sum(axis=1) + attributions.expected_value, raw, atol=1e-9
    )
    # The expected value is TreeSHAP's bias term.
    shap = model.booster_.predict(matrix[:5], pred_contrib=True)
    np.testing.assert_allclose(shap[:, -1], attributions.expected_value, atol=1e-12)


def test_path_attributions_equal_tree_shap_for_stumps(frame):
    """With one split per tree, path attributions and TreeSHAP coincide exactly."""
    churn_y, _ = _labels(frame)
    model = _fit(churn_y, frame, num_leaves=2, n_estimators=30)
    matrix = model.prepare(frame)
    _, contributions = path_attributions(model).attribute(
        model.booster_.predict(matrix, pred_leaf=True)
    )
    shap = model.booster_.predict(matrix, pred_contrib=True)[:, :-1]
    np.testing.assert_allclose(contributions, shap, atol=1e-12)


def test_top_reasons_agree_with_tree_shap_on_a_small_model(frame):
    churn_y, _ = _labels(frame)
    noisy = np.where(np.random.default_rng(3).random(len(frame)) < 0.1, 1 - churn_y, churn_y)
    model = _fit(noisy, frame, num_leaves=15, n_estimators=60)
    path = score_matrix("churn", model, model.prepare(frame), top_k=1, reason_method="path")
    exact = score_matrix("churn", model, model.prepare(frame), top_k=1, reason_method="tree_shap")
    np.testing.assert_array_equal(path.probability, exact.probability)
    top_path = [r[0]["feature"] for r in path.reasons]
    top_exact = [r[0]["feature"] for r in exact.reasons]
    agreement = np.mean([a == b for a, b in zip(top_path, top_exact, strict=True)])
    assert agreement >= 0.95
    signs = [
        np.sign(a[0]["contribution"]) == np.sign(b[0]["contribution"])
        for a, b in zip(path.reasons, exact.reasons, strict=True)
        if a[0]["feature"] == b[0]["feature"]
    ]
    assert np.mean(signs) >= 0.99


def test_tree_shap_reasons_are_lightgbms_contributions(frame, champions):
    churn, upsell = champions
    sample = frame.head(10)
    scores = score_accounts(sample, churn, upsell, top_k=2, reason_method="tree_shap")
    shap = churn.model.booster_.predict(churn.model.prepare(sample), pred_contrib=True)[:, :-1]
    expected_top = top_contributions(shap, 2)[0]
    for i, reasons in enumerate(scores["reasons"]):
        churn_reasons = _reasons(reasons, "churn")
        names = [churn.model.feature_names_[j] for j in expected_top[i] if j >= 0]
        assert [r["feature"] for r in churn_reasons] == names
        for reason in churn_reasons:
            j = churn.model.feature_names_.index(reason["feature"])
            assert reason["contribution"] == pytest.approx(shap[i, j], abs=1e-12)
    with pytest.raises(ValueError, match="reason_method"):
        score_accounts(sample, churn, upsell, reason_method="lime")


def test_a_single_leaf_booster():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 100},
        lgb.Dataset(x, (x[:, 0] > 0).astype(float)),
        num_boost_round=3,
    )
    attributions = PathAttributions.from_booster(booster)
    raw, contributions = attributions.attribute(booster.predict(x, pred_leaf=True))
    np.testing.assert_array_equal(raw, booster.predict(x, raw_score=True))
    assert not contributions.any()


# ------------------------------------------------------------------ small helpers


def test_top_contributions_orders_by_magnitude_and_skips_zeros():
    contributions = np.array([[0.1, -0.5, 0.3, 0.0], [0.0, 0.0, 0.2, 0.0], [0.2, -0.2, 0.0, 0.2]])
    indices, values = top_contributions(contributions, 3)
    assert indices.tolist() == [[1, 2, 0], [2, -1, -1], [0, 1, 3]]
    assert values.tolist() == [[-0.5, 0.3, 0.1], [0.2, 0.0, 0.0], [0.2, -0.2, 0.2]]
    assert top_contributions(contributions, 0)[0].shape == (3, 0)
    assert top_contributions(contributions, 10)[0].shape == (3, 4)


def test_value_text_and_sentences():
    assert value_text(None) is None and value_text(float("nan")) is None
    assert value_text(125000.0) == "125000" and value_text(0.123456789) == "0.123457"
    assert value_text("smb") == "smb"
    assert reason_sentence("arr", 125000.0) == "ARR is 125,000"
    assert reason_sentence("seat_utilisation_change_12w", -0.25) == (
        "Seat utilisation fell 25% in 12 weeks"
    )
    assert reason_sentence("custom_score", 2.5) == "custom_score = 2.5"
    assert reason_sentence("custom_score", None) == "custom_score: unknown"


def test_reason_entries_say_each_value_as_its_own_sentence():
    """Repeated values are said once per call; NaN, +inf, 0.0 and -0.0 are told apart."""
    names = ["seat_utilisation_change_12w", "segment"]
    matrix = np.array(
        [[-0.25, 0.0], [-0.25, 1.0], [np.nan, np.nan], [np.inf, 0.0], [0.0, 0.0], [-0.0, 0.0]]
    )
    indices = np.tile([0, 1], (len(matrix), 1))
    amounts = np.ones_like(matrix)
    rows = reason_entries("churn", indices, amounts, matrix, names, {1: ("smb", "enterprise")})
    said = [[(e["value"], e["text"]) for e in row] for row in rows]
    expected = [
        [(value_text(v), reason_sentence(names[0], v)) for v in row[:1]]
        + [
            (level, reason_sentence(names[1], level))
            for level in [None if np.isnan(row[1]) else ("smb", "enterprise")[int(row[1])]]
        ]
        for row in [[-0.25, 0.0], [-0.25, 1.0], [None, np.nan], [np.inf, 0.0], [0.0, 0.0]]
    ]
    assert said[:5] == expected
    assert said[5][0][0] == "-0" and said[4][0][0] == "0"
    assert said[2][0] == (None, reason_sentence(names[0], None))
    assert said[3][0][0] == "inf"


def test_reasons_by_model_groups_in_rank_order():
    flat = [
        {"model": "upsell", "rank": 2, "feature": "b"},
        {"model": "churn", "rank": 1, "feature": "a"},
        {"model": "upsell", "rank": 1, "feature": "c"},
    ]
    grouped = reasons_by_model(flat)
    assert [r["feature"] for r in grouped["churn"]] == ["a"]
    assert [r["feature"] for r in grouped["upsell"]] == ["c", "b"]
