"""serving.online on hand-made models and a hand-made run folder (no server, no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pandas as pd
import pytest

from serving.api_guard import ApiError
from serving.api_models import AccountRequest
from serving.online import (
    StateKey,
    answer_portfolio,
    answer_score,
    build_state,
    check_features,
    feature_rules,
    filtered_portfolio,
    plan_and_score,
    read_snapshot,
)
from serving.online_runtime import ScoringRuntime
from serving.online_settings import ServiceSettings
from serving.settings import PortfolioSettings
from training.model import CalibratedBoostedClassifier
from training.registry import Champion

AS_OF = "2025-06-30"


def _features(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "account_id": pd.array([f"A{i:03d}" for i in range(n)], dtype="string"),
            "as_of": pd.to_datetime([AS_OF] * n).astype("datetime64[ns]"),
            "arr": rng.uniform(1_000, 100_000, n).round(2),
            "tenure_days": rng.uniform(0, 1000, n),
            "seats": rng.uniform(1, 200, n),
            "segment": pd.array(rng.choice(["smb", "mid-market", "enterprise"], n), dtype="string"),
        }
    )


@pytest.fixture(scope="module")
def champions() -> tuple[Champion, Champion]:
    frame = _features()
    X = frame[["arr", "tenure_days", "seats", "segment"]]
    churn_y = (frame["tenure_days"] < 300).astype(int)
    upsell_y = (frame["seats"] > 120).astype(int)
    models = [
        CalibratedBoostedClassifier(n_estimators=20, num_leaves=7, calibration_folds=3).fit(X, y)
        for y in (churn_y, upsell_y)
    ]
    return (
        Champion("churn", "4", models[0], None, {}),
        Champion("upsell", "7", models[1], None, {}),
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / AS_OF
    folder.mkdir()
    _features().to_parquet(folder / "features.parquet")
    (folder / "manifest.json").write_text(json.dumps({"as_of": AS_OF}))
    return folder


@pytest.fixture(scope="module")
def state(champions, run_dir):
    churn, upsell = champions
    return build_state(churn, upsell, read_snapshot(run_dir), 3, PortfolioSettings())


def _accounts(*items: dict) -> list[AccountRequest]:
    return [AccountRequest.model_validate(item) for item in items]


def _results(body: bytes) -> list[dict]:
    return json.loads(body)["results"]


def test_state_key_names_versions_and_snapshot(state, run_dir):
    assert state.key.churn_version == "4" and state.key.upsell_version == "7"
    assert str(state.key).startswith("churn v4, upsell v7, snapshot ")
    assert str(run_dir.resolve()) in state.key.snapshot


def test_answers_by_id_and_unknown_ids(state):
    body, looked_up, live = plan_and_score(
        state, _accounts({"account_id": "A001"}, {"account_id": "ZZZ"}), ServiceSettings()
    )
    known, unknown = _results(body)
    assert (looked_up, live) == (1, 0)
    assert known["account_id"] == "A001" and known["source"] == "snapshot"
    assert known["as_of"] == AS_OF
    assert known["churn_model_version"] == "4" and known["upsell_model_version"] == "7"
    assert known["expected_arr_at_risk"] == pytest.approx(known["p_churn"] * known["arr"])
    models = [r["model"] for r in known["reasons"]]
    assert models == sorted(models) and 1 <= models.count("churn") <= 3
    assert next(r["rank"] for r in known["reasons"] if r["model"] == "churn") == 1
    assert unknown == {
        "account_id": "ZZZ",
        "error": f"unknown account_id: not in the feature snapshot of {AS_OF} ({AS_OF}); "
        "give its features to score it",
    }


def test_what_if_of_a_known_account_equals_its_snapshot_answer(state):
    body, _, live = plan_and_score(
        state,
        _accounts({"account_id": "A002"}, {"account_id": "A002", "features": {}}),
        ServiceSettings(),
    )
    snapshot, what_if = _results(body)
    assert live == 1 and what_if["source"] == "features"
    for name in ("p_churn", "p_upsell", "arr", "expected_expansion", "priority"):
        assert what_if[name] == pytest.approx(snapshot[name], abs=1e-9), name
    assert what_if["tier"] == snapshot["tier"]
    assert what_if["reasons"] == snapshot["reasons"]


def test_what_if_changes_move_the_scores_the_right_way(state):
    short = {"account_id": "A003", "features": {"tenure_days": 10.0}}
    long = {"account_id": "A003", "features": {"tenure_days": 990.0}}
    body, _, _ = plan_and_score(state, _accounts(short, long), ServiceSettings())
    churn_short, churn_long = (r["p_churn"] for r in _results(body))
    assert churn_short > churn_long


def test_new_account_needs_every_model_feature(state):
    record = {"arr": 5000.0, "tenure_days": 100.0, "seats": 10.0, "segment": None}
    body, _, _ = plan_and_score(
        state, _accounts({"account_id": "NEW", "features": record}), ServiceSettings()
    )
    assert _results(body)[0]["account_id"] == "NEW"
    with pytest.raises(ApiError) as missing:
        plan_and_score(
            state,
            _accounts({"account_id": "NEW", "features": {"arr": 5000.0}}),
            ServiceSettings(),
        )
    assert missing.value.status == 422
    assert missing.value.details[0]["type"] == "missing_features"
    assert missing.value.details[0]["loc"] == ["accounts", 0, "features"]


@pytest.mark.parametrize(
    ("features", "loc_name", "rule"),
    [
        ({"shoe_size": 1.0}, "shoe_size", "unknown_feature"),
        ({"segment": 3.0}, "segment", "category_type"),
        ({"seats": "many"}, "seats", "number_type"),
        ({"arr": -1.0}, "arr", "greater_than_equal"),
        ({"arr": None}, "arr", "number_type"),
        ({"arr": True}, "arr", "number_type"),
    ],
)
def test_feature_rules_name_the_field(state, features, loc_name, rule):
    with pytest.raises(ApiError) as error:
        check_features(2, features, {"arr": 1.0}, state.rules)
    assert error.value.status == 422
    assert error.value.details[0]["loc"] == ["accounts", 2, "features", loc_name]
    assert error.value.details[0]["type"] == rule


def test_feature_rules_merge_over_the_snapshot_record(state):
    merged = check_features(0, {"seats": 5.0}, {"seats": 50.0, "arr": 10.0}, state.rules)
    assert merged == {"seats": 5.0, "arr": 10.0}


def test_rules_cover_both_models_and_the_snapshot_columns(champions, run_dir):
    rules = feature_rules(champions[0].model, champions[1].model, read_snapshot(run_dir))
    assert set(rules.model_features) == {"arr", "tenure_days", "seats", "segment"}
    assert rules.categorical == {"segment"}


def test_more_accounts_than_the_limit_is_a_422(state):
    with pytest.raises(ApiError) as error:
        plan_and_score(
            state,
            _accounts(*({"account_id": f"A{i:03d}"} for i in range(3))),
            ServiceSettings(max_accounts=2),
        )
    assert error.value.status == 422
    assert "at most 2 accounts" in error.value.message


def test_portfolio_summary_whole_and_filtered(state):
    whole = json.loads(state.portfolio)
    assert whole["as_of"] == AS_OF
    assert whole["arr_total"] == pytest.approx(_features()["arr"].sum())
    assert whole["weighted_churn_risk"] > 0
    smb = json.loads(filtered_portfolio(state, {"segment": "smb"}))
    assert 0 < smb["arr_total"] < whole["arr_total"]
    assert filtered_portfolio(state, {"segment": "smb"}) is filtered_portfolio(
        state, {"segment": "smb"}
    )
    with pytest.raises(ApiError) as error:
        filtered_portfolio(state, {"segment": "giant"})
    assert error.value.details[0]["loc"] == ["segment"]


def test_state_without_snapshot_scores_what_if_only(champions):
    churn, upsell = champions
    bare = build_state(churn, upsell, None, 2, PortfolioSettings())
    assert bare.key == StateKey("4", "7", None)
    record = {"arr": 5000.0, "tenure_days": 100.0, "seats": 10.0, "segment": "smb"}
    body, _, _ = plan_and_score(
        bare,
        _accounts({"account_id": "X"}, {"account_id": "Y", "features": record}),
        ServiceSettings(),
    )
    unknown, scored = _results(body)
    assert "no feature snapshot is loaded" in unknown["error"]
    assert scored["as_of"] is None
    assert all(r["rank"] <= 2 for r in scored["reasons"])


class _Broken:
    def current_key(self):
        raise ConnectionError("tracking server refused the connection")

    def load(self, key, previous):
        raise AssertionError("never called")


def test_not_ready_answers_503_with_the_reason():
    runtime = ScoringRuntime(_Broken(), reload_seconds=30, retry_seconds=5)
    runtime.refresh()

    async def ask():
        score = await answer_score(runtime, ServiceSettings(), _NoMetrics(), [])
        portfolio = await answer_portfolio(runtime, {})
        return score, portfolio

    (score_status, score_body), (portfolio_status, _) = anyio.run(ask)
    assert score_status == 503 and portfolio_status == 503
    error = json.loads(score_body)["error"]
    assert error["type"] == "not_ready"
    assert "refused the connection" in error["message"]


class _NoMetrics:
    def count(self, state, source, n):
        return None
