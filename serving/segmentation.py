"""Data-driven segmentation: value x risk x potential grid, ideal-customer-profile fit, campaigns.

- `value_segment`: a readable name for each account's cell in the value (ARR) x risk
  (p_churn) x potential (p_upsell) grid;
- `IdealCustomerProfile`: a transparent fit score learned from the firmographics of the
  best accounts (scikit-learn estimator contract);
- `campaign_eligibility`: the campaign rules of the settings applied to enriched scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from serving.settings import CampaignRule, SegmentationSettings

# (high value, high risk, high potential) -> name. High-value accounts at risk are
# protected whatever their potential.
VALUE_SEGMENTS: dict[tuple[bool, bool, bool], str] = {
    (True, True, True): "protect",
    (True, True, False): "protect",
    (True, False, True): "expand",
    (True, False, False): "sustain",
    (False, True, True): "rescue",
    (False, True, False): "watch",
    (False, False, True): "develop",
    (False, False, False): "maintain",
}
VALUE_SEGMENT_DESCRIPTIONS: dict[str, str] = {
    "protect": "high value, high churn risk: save plan, executive attention",
    "expand": "high value, low risk, high upsell potential: grow the account",
    "sustain": "high value, low risk, low potential: keep the relationship healthy",
    "rescue": "lower value, high risk but high potential: fix adoption, then grow",
    "watch": "lower value, high risk, low potential: automated retention programmes",
    "develop": "lower value, low risk, high potential: nurture towards expansion",
    "maintain": "lower value, low risk, low potential: tech-touch",
}


def high_value_threshold(arr: pd.Series, settings: SegmentationSettings) -> float:
    """ARR from which an account is high value (absolute setting, else a quantile of ARR)."""
    if settings.high_value_arr is not None:
        return float(settings.high_value_arr)
    if arr.empty:
        return float("inf")
    return float(np.quantile(arr.to_numpy(dtype="float64"), settings.high_value_quantile))


def value_segment(scores: pd.DataFrame, settings: SegmentationSettings) -> pd.Series:
    """Each account's cell of the value x risk x potential grid, by name (`VALUE_SEGMENTS`).

    high value: arr >= high_value_threshold (and arr > 0); high risk: p_churn >=
    high_risk_p_churn; high potential: p_upsell >= high_potential_p_upsell.
    """
    threshold = high_value_threshold(scores["arr"], settings)
    high_value = (scores["arr"] >= threshold) & (scores["arr"] > 0)
    high_risk = scores["p_churn"] >= settings.high_risk_p_churn
    high_potential = scores["p_upsell"] >= settings.high_potential_p_upsell
    names = [
        VALUE_SEGMENTS[(bool(v), bool(r), bool(p))]
        for v, r, p in zip(high_value, high_risk, high_potential, strict=True)
    ]
    return pd.Series(names, index=scores.index, dtype="string", name="value_segment")


def employee_band(employees: pd.Series, bounds: tuple[float, ...]) -> pd.Series:
    """Employee count as a band label like "50-249" or "5000+"; missing stays missing."""
    edges = [0.0, *bounds]
    labels = [f"{int(lo)}-{int(hi) - 1}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"{int(edges[-1])}+")
    values = pd.to_numeric(employees).astype("float64")
    codes = np.searchsorted(np.asarray(bounds, dtype="float64"), values.to_numpy(), side="right")
    result = pd.Series(np.array(labels, dtype=object)[np.minimum(codes, len(labels) - 1)])
    result[values.isna().to_numpy()] = pd.NA
    return pd.Series(result.to_numpy(), index=employees.index, dtype="string", name="employee_band")


def firmographics(frame: pd.DataFrame, settings: SegmentationSettings) -> pd.DataFrame:
    """The ICP attributes of each account (employee_band derived from employees)."""
    columns = {}
    for attribute in settings.icp_attributes:
        if attribute == "employee_band":
            source = (
                frame["employees"]
                if "employees" in frame.columns
                else pd.Series(np.nan, index=frame.index)
            )
            columns[attribute] = employee_band(source, settings.employee_bands)
        elif attribute in frame.columns:
            columns[attribute] = frame[attribute].astype("string")
        else:
            columns[attribute] = pd.Series(pd.NA, index=frame.index, dtype="string")
    return pd.DataFrame(columns, index=frame.index)


def best_accounts(scores: pd.DataFrame, settings: SegmentationSettings) -> pd.Series:
    """The best accounts: the top `icp_best_share` by expected retained ARR, arr x (1 - p_churn).

    Ties are broken by account_id; at least one account is best when any has ARR.
    """
    retained = scores["arr"] * (1.0 - scores["p_churn"])
    count = int(np.ceil(settings.icp_best_share * int((retained > 0).sum())))
    ranked = (
        pd.DataFrame({"retained": retained, "account_id": scores["account_id"].astype(str)})
        .sort_values(["retained", "account_id"], ascending=[False, True])
        .head(count)
    )
    return pd.Series(scores.index.isin(ranked.index), index=scores.index, name="is_best")


class IdealCustomerProfile(BaseEstimator):
    """Ideal-customer-profile fit from categorical firmographics.

    `fit(X, y)` learns, for every attribute (column of X) and category, the share of
    accounts in that category that are best accounts (y = 1), smoothed towards the overall
    best share with `smoothing` pseudo-accounts: rate = (best + smoothing x base) /
    (accounts + smoothing). A missing or unseen category gets the base rate.

    `score_samples(X)` is the weighted mean over attributes of where the account's
    category sits between the attribute's worst and best category:
    (rate - lowest rate) / (highest rate - lowest rate), in [0, 1]. 1 means the account
    is in the best-retaining category on every attribute, 0 in the worst. An attribute
    whose categories all have the same rate counts 1 (0 when nobody is a best account).
    `weights` (attribute -> weight) defaults to equal weights.
    """

    def __init__(self, smoothing: float = 5.0, weights: dict[str, float] | None = None):
        self.smoothing = smoothing
        self.weights = weights

    def fit(self, X: pd.DataFrame, y: pd.Series | np.ndarray) -> IdealCustomerProfile:
        target = np.asarray(y, dtype="float64")
        if len(target) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(target)}")
        self.base_rate_ = float(target.mean()) if len(target) else 0.0
        self.attributes_ = list(X.columns)
        self.rates_: dict[str, dict[str, float]] = {}
        self.top_rate_: dict[str, float] = {}
        self.bottom_rate_: dict[str, float] = {}
        for attribute in self.attributes_:
            labels = X[attribute].astype("string")
            known = labels.notna().to_numpy()
            frame = pd.DataFrame({"label": labels[known].astype(str), "best": target[known]})
            stats = frame.groupby("label")["best"].agg(["sum", "count"])
            rates = (stats["sum"] + self.smoothing * self.base_rate_) / (
                stats["count"] + self.smoothing
            )
            self.rates_[attribute] = {str(k): float(v) for k, v in rates.items()}
            values = [self.base_rate_, *self.rates_[attribute].values()]
            self.top_rate_[attribute] = max(values)
            self.bottom_rate_[attribute] = min(values)
        return self

    def _attribute_weights(self) -> tuple[dict[str, float], float]:
        weights = self.weights or {a: 1.0 for a in self.attributes_}
        return weights, sum(weights.get(a, 0.0) for a in self.attributes_)

    def _relative(self, attribute: str, rates: np.ndarray) -> np.ndarray:
        top, bottom = self.top_rate_[attribute], self.bottom_rate_[attribute]
        if top <= bottom:
            return np.full(len(rates), 1.0 if top > 0 else 0.0)
        return (rates - bottom) / (top - bottom)

    def score_samples(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "rates_")
        weights, total_weight = self._attribute_weights()
        if total_weight <= 0 or len(X) == 0:
            return np.zeros(len(X))
        score = np.zeros(len(X))
        for attribute in self.attributes_:
            weight = weights.get(attribute, 0.0)
            if weight == 0:
                continue
            labels = X[attribute].astype("string").astype(object)
            rates = labels.map(self.rates_[attribute]).astype("float64").fillna(self.base_rate_)
            score += weight * self._relative(attribute, rates.to_numpy())
        return score / total_weight

    def score_record(self, labels: Mapping[str, str | None]) -> float:
        """`score_samples` for one account given as attribute -> category (None = missing),
        in plain Python for online use."""
        check_is_fitted(self, "rates_")
        weights, total_weight = self._attribute_weights()
        if total_weight <= 0:
            return 0.0
        score = 0.0
        for attribute in self.attributes_:
            weight = weights.get(attribute, 0.0)
            if weight == 0:
                continue
            label = labels.get(attribute)
            rate = (
                self.base_rate_
                if label is None
                else self.rates_[attribute].get(str(label), self.base_rate_)
            )
            score += weight * float(self._relative(attribute, np.array([rate]))[0])
        return score / total_weight


def icp_fit(scores: pd.DataFrame, settings: SegmentationSettings) -> pd.Series:
    """ICP fit of every scored account, learned from the best accounts of the same scores."""
    features = firmographics(scores, settings)
    model = IdealCustomerProfile(smoothing=settings.icp_smoothing).fit(
        features, best_accounts(scores, settings)
    )
    return pd.Series(np.round(model.score_samples(features), 9), index=scores.index, name="icp_fit")


def rule_matches(scores: pd.DataFrame, rule: CampaignRule) -> pd.Series:
    """Whether each account meets every condition of `rule` (a missing value fails)."""
    match = pd.Series(True, index=scores.index)
    for column, bound in rule.at_least.items():
        if column not in scores.columns:
            raise ValueError(f"campaign {rule.name!r}: scores have no column {column!r}")
        match &= (pd.to_numeric(scores[column]) >= bound).fillna(False).astype(bool)
    for column, bound in rule.below.items():
        if column not in scores.columns:
            raise ValueError(f"campaign {rule.name!r}: scores have no column {column!r}")
        match &= (pd.to_numeric(scores[column]) < bound).fillna(False).astype(bool)
    if rule.tiers is not None:
        match &= scores["tier"].isin(rule.tiers).fillna(False).astype(bool)
    if rule.value_segments is not None:
        match &= scores["value_segment"].isin(rule.value_segments).fillna(False).astype(bool)
    return match


def campaign_eligibility(scores: pd.DataFrame, rules: tuple[CampaignRule, ...]) -> pd.DataFrame:
    """One boolean column `eligible_<name>` per rule, and `eligible_campaigns`: the names of
    the campaigns an account is eligible for, comma-separated in rule order ("" for none)."""
    columns = {f"eligible_{rule.name}": rule_matches(scores, rule) for rule in rules}
    flags = pd.DataFrame(columns, index=scores.index)
    names = [rule.name for rule in rules]
    flags["eligible_campaigns"] = pd.Series(
        [
            ",".join(name for name, hit in zip(names, row, strict=True) if hit)
            for row in flags[[f"eligible_{n}" for n in names]].itertuples(index=False)
        ]
        if names
        else [""] * len(flags),
        index=scores.index,
        dtype="string",
    )
    return flags
