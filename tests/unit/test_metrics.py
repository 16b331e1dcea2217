"""Metrics on inputs small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    calibration_bins,
    cumulative_gain,
    evaluate_binary,
    expected_calibration_error,
    lift_at,
)


def test_ece_by_hand():
    # bin [0.1,0.2): two rows, predicted 0.1, observed 0 -> 2/4 * 0.1
    # bin [0.7,0.8): one row, predicted 0.7, observed 1 -> 1/4 * 0.3
    # bin [0.9,1.0]: one row, predicted 0.9, observed 1 -> 1/4 * 0.1
    y = [0, 0, 1, 1]
    p = [0.1, 0.1, 0.9, 0.7]
    assert expected_calibration_error(y, p) == pytest.approx(0.05 + 0.075 + 0.025)


def test_ece_is_zero_when_each_bin_matches_its_rate():
    y = [0, 1, 0, 1, 1, 1, 1, 0]
    p = [0.5] * 4 + [0.75] * 4
    assert expected_calibration_error(y, p) == pytest.approx(0.0)


def test_probability_one_falls_in_last_bin():
    bins = calibration_bins([1, 0], [1.0, 0.0])
    assert bins[-1]["count"] == 1 and bins[0]["count"] == 1
    assert bins[-1]["mean_predicted"] == 1.0
    assert math.isnan(bins[5]["mean_predicted"])


def test_lift_top_decile_by_hand():
    # 20 rows, 4 positives (rate 0.2); the top 2 rows hold 1 positive -> rate 0.5 -> lift 2.5
    y = np.zeros(20)
    y[[0, 5, 6, 7]] = 1
    p = np.linspace(0.01, 0.2, 20)[::-1].copy()  # row 0 highest, row 1 second
    assert lift_at(y, p, 0.1) == pytest.approx(2.5)
    # all positives ranked first: top 2 both positive -> 1.0 / 0.2
    assert lift_at(y, (y + p) / 2, 0.1) == pytest.approx(5.0)


def test_cumulative_gain_endpoints():
    x, gain = cumulative_gain([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(gain, [0, 0.5, 0.5, 1.0, 1.0])


def test_evaluate_binary_with_arr():
    y = [1, 0, 0, 1]
    p = [0.5, 0.5, 0.2, 0.8]
    arr = [100.0, 300.0, 50.0, 100.0]
    m = evaluate_binary(y, p, arr)
    assert m["predicted_arr_at_risk"] == pytest.approx(50 + 150 + 10 + 80)
    assert m["realised_churned_arr"] == pytest.approx(200)
    assert m["arr_at_risk_rel_error"] == pytest.approx(290 / 200 - 1)
    assert m["brier"] == pytest.approx((0.25 + 0.25 + 0.04 + 0.04) / 4)
    assert m["roc_auc"] == pytest.approx(0.875)  # pairs (pos>neg): 0.5 vs .5 tie, rest wins
    expected_log_loss = -(math.log(0.5) + math.log(0.5) + math.log(0.8) + math.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(expected_log_loss)
    assert set(m) >= {"roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top_decile"}


def test_single_class_gives_nan_auc_not_an_error():
    m = evaluate_binary([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["lift_top_decile"])


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="length"):
        evaluate_binary([0, 1], [0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_binary([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="0 or 1"):
        evaluate_binary([0, 2], [0.5, 0.5])
