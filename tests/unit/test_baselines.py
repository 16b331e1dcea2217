"""Baselines: the rule-based health score by hand, and the logistic pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.baselines import (
    BaselineNotApplicable,
    HealthComponent,
    HealthScoreBaseline,
    HealthScoreSpec,
    fit_logistic_baseline,
    logistic_probabilities,
)

SPEC = HealthScoreSpec(
    components={
        "usage": HealthComponent(0.5, {"utilisation": +1}),
        "support": HealthComponent(0.5, {"tickets": -1}),
    }
)


def test_health_score_by_hand():
    train = pd.DataFrame({"utilisation": [0.1, 0.2, 0.3, 0.4], "tickets": [0.0, 1.0, 2.0, 3.0]})
    model = HealthScoreBaseline(SPEC).fit(train, np.array([1, 1, 0, 0]))
    rows = pd.DataFrame(
        {"utilisation": [0.4, 0.1, np.nan, np.nan], "tickets": [0.0, 3.0, 0.0, np.nan]}
    )
    # utilisation 0.4: mid-rank of the top value = 3.5/4 = 0.875; tickets 0 (healthy): 1 - 0.125
    # -> (0.875 + 0.875) / 2 = 0.875 -> 87.5. The mirror row gives 12.5. A row with only
    # tickets known uses the support component alone; nothing known -> neutral 50.
    np.testing.assert_allclose(model.health_score(rows), [87.5, 12.5, 87.5, 50.0])


def test_health_maps_low_health_to_high_churn():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"utilisation": rng.random(400), "tickets": rng.poisson(2, 400)})
    risk = 1 - train["utilisation"] + 0.1 * train["tickets"]
    y = (rng.random(400) < risk / risk.max()).astype(int)
    model = HealthScoreBaseline(SPEC).fit(train, y)
    p = model.predict_proba(pd.DataFrame({"utilisation": [0.95, 0.05], "tickets": [0.0, 6.0]}))
    assert p[1] > p[0]


def test_health_needs_signals():
    with pytest.raises(BaselineNotApplicable):
        HealthScoreBaseline().fit(pd.DataFrame({"tenure": [1.0, 2.0]}), np.array([0, 1]))


def test_logistic_baseline_handles_missing_and_unseen_categories():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "arr": rng.lognormal(10, 1, 300),
            "plan": pd.Series(rng.choice(["a", "b"], 300), dtype="str"),
        }
    )
    X.loc[::10, "arr"] = np.nan
    y = (X["plan"] == "a").to_numpy(dtype=int)
    model = fit_logistic_baseline(X, y)
    p = logistic_probabilities(
        model, pd.DataFrame({"arr": [np.nan, 1e5], "plan": pd.Series(["zzz", "a"], dtype="str")})
    )
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    assert p[1] > 0.5
