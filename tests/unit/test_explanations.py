"""serving.explanations: reasons laid out as tables and compared across model sets.

Churn depends only on `tenure` and upsell only on `seats`; a second churn
model is fitted on `noise` alone, so the side-by-side table must show tenure
for the first set and noise for the second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.explanations import compare_reasons, reasons_long
from serving.scoring import score_accounts
from training.model import CalibratedBoostedClassifier
from training.registry import Champion


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 500
    return pd.DataFrame(
        {
            "account_id": pd.array([f"A{i:03d}" for i in range(n)], dtype="string"),
            "as_of": pd.to_datetime(["2025-06-30"] * n).astype("datetime64[ns]"),
            "arr": rng.uniform(1_000, 50_000, n),
            "tenure": rng.uniform(0, 1000, n),
            "seats": rng.uniform(1, 200, n),
            "noise": rng.normal(size=n),
        }
    )


def _champion(frame: pd.DataFrame, label: np.ndarray, columns: list[str], name: str) -> Champion:
    model = CalibratedBoostedClassifier(n_estimators=30, num_leaves=7, n_jobs=1).fit(
        frame[columns], label
    )
    return Champion(name, "1", model, None, {})


@pytest.fixture(scope="module")
def model_sets(frame: pd.DataFrame) -> dict[str, tuple[Champion, Champion]]:
    churn = (frame["tenure"] < 300).to_numpy(dtype=int)
    upsell = (frame["seats"] > 120).to_numpy(dtype=int)
    upsell_model = _champion(frame, upsell, ["seats", "arr"], "upsell")
    return {
        "challenger": (_champion(frame, churn, ["tenure", "arr"], "churn"), upsell_model),
        "champion": (_champion(frame, churn, ["noise"], "churn"), upsell_model),
    }


def test_reasons_long_has_one_row_per_reason(frame, model_sets):
    scores = score_accounts(frame.head(4), *model_sets["challenger"], top_k=2)
    long = reasons_long(scores)
    # a feature that contributes nothing is no reason: some accounts have fewer than 2
    assert len(long) == sum(len(r) for r in scores["reasons"])
    first = long[long["account_id"] == "A000"]
    assert list(first["model"]) == [r["model"] for r in scores.loc[0, "reasons"]]
    assert list(first["rank"]) == [r["rank"] for r in scores.loc[0, "reasons"]]
    assert (first.loc[first["model"] == "churn", "p"] == scores.loc[0, "p_churn"]).all()
    assert (first.loc[first["model"] == "upsell", "p"] == scores.loc[0, "p_upsell"]).all()
    top_churn = first[(first["model"] == "churn") & (first["rank"] == 1)].iloc[0]
    assert top_churn["feature"] == "tenure"
    reason = scores.loc[0, "reasons"][0]
    assert top_churn["contribution"] == reason["contribution"]
    assert top_churn["text"] == reason["text"]


def test_reasons_long_of_no_reasons_is_empty(frame, model_sets):
    scores = score_accounts(frame.head(3), *model_sets["challenger"], top_k=0)
    long = reasons_long(scores)
    assert long.empty and "contribution" in long.columns


def test_compare_reasons_side_by_side(frame, model_sets):
    table = compare_reasons(frame.head(3), model_sets, top_k=2)
    assert list(table.columns.get_level_values(0).unique()) == ["challenger", "champion"]
    assert set(table.columns.get_level_values(1)) == {"p", "text", "contribution"}
    keys = set()
    for pair in model_sets.values():
        long = reasons_long(score_accounts(frame.head(3), *pair, top_k=2))
        keys |= set(zip(long["account_id"], long["model"], long["rank"], strict=True))
    assert set(table.index) == keys  # every reason of every set, once
    top_churn = table.xs(("churn", 1), level=("model", "rank"))
    assert (top_churn[("challenger", "text")].str.contains("tenure")).all()
    assert (top_churn[("champion", "text")].str.contains("noise")).all()
    # the upsell model is shared: same reasons under both sets
    upsell = table.xs("upsell", level="model")
    pd.testing.assert_series_equal(
        upsell[("challenger", "text")], upsell[("champion", "text")], check_names=False
    )
    with pytest.raises(ValueError, match="no model set"):
        compare_reasons(frame.head(3), {})
