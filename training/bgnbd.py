"""BG/NBD ("buy till you die") for transactional customers: a churn baseline for order data.

Fader, Hardie & Lee (2005), "Counting your customers the easy way". Each
customer buys at a Poisson rate lambda ~ Gamma(r, alpha) while alive and, after
each purchase, drops out with probability p ~ Beta(a, b). Fitted by maximum
likelihood on the repeat-purchase summary of each customer:

- `frequency` x: repeat purchase days (purchase days after the first);
- `recency` t_x: time from the first to the last purchase;
- `age` T: time from the first purchase to the end of the calibration period.

(Times in days.) `probability_alive` is P(alive at T); for the contract churn
label (no purchase in (T, T + h]) the model gives
P(no purchase) = (1 - P_alive) + P_alive x ((alpha + T) / (alpha + T + h))^(r + x),
because an alive customer cannot drop out without buying.
The maintained `lifetimes` package does not install cleanly with numpy 2 /
pandas 3, hence this implementation (scipy.optimize).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln


def repeat_purchase_summary(
    orders: pd.DataFrame, end: pd.Timestamp, date_col: str = "date", id_col: str = "account_id"
) -> pd.DataFrame:
    """frequency, recency, age (days) and the mean positive order value per customer, up to `end`.

    Only positive orders dated on or before `end` count; purchases on the same
    day are one purchase.
    """
    rows = orders[(orders["amount"] > 0) & (orders[date_col] <= end)]
    days = rows.assign(day=rows[date_col].dt.normalize())
    daily = days.groupby([id_col, "day"], as_index=False)["amount"].sum()
    grouped = daily.groupby(id_col)
    first, last = grouped["day"].min(), grouped["day"].max()
    return pd.DataFrame(
        {
            "frequency": grouped.size() - 1,
            "recency": (last - first).dt.days.astype(float),
            "age": (end.normalize() - first).dt.days.astype(float),
            "monetary_value": grouped["amount"].mean(),
        }
    )


def _log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> float:
    r, alpha, a, b = np.exp(params)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    term1 = betaln(a, b + x) - betaln(a, b) + common - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        term2 = np.where(
            x > 0,
            betaln(a + 1, np.maximum(b + x - 1, 1e-12))
            - betaln(a, b)
            + common
            - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return float(np.sum(np.logaddexp(term1, term2)))


@dataclass(frozen=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float

    @classmethod
    def fit(cls, frequency, recency, age) -> BGNBD:
        """Maximum-likelihood parameters (Nelder-Mead then L-BFGS-B on log-parameters)."""
        x = np.asarray(frequency, dtype=float)
        t_x = np.asarray(recency, dtype=float)
        T = np.asarray(age, dtype=float)
        if x.size == 0:
            raise ValueError("no customers to fit BG/NBD on")

        def objective(params: np.ndarray) -> float:
            value = -_log_likelihood(params, x, t_x, T) / x.size
            return value if np.isfinite(value) else 1e10

        start = np.log([1.0, max(float(np.mean(T)), 1.0), 1.0, 1.0])
        rough = minimize(objective, start, method="Nelder-Mead", options={"maxiter": 2000})
        fine = minimize(objective, rough.x, method="L-BFGS-B")
        best = fine if fine.fun <= rough.fun else rough
        r, alpha, a, b = np.exp(best.x)
        return cls(float(r), float(alpha), float(a), float(b))

    def probability_alive(self, frequency, recency, age) -> np.ndarray:
        x = np.asarray(frequency, dtype=float)
        t_x = np.asarray(recency, dtype=float)
        T = np.asarray(age, dtype=float)
        log_ratio = (
            np.log(self.a)
            - np.log(np.maximum(self.b + x - 1, 1e-12))
            + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        )
        return np.where(x > 0, 1.0 / (1.0 + np.exp(log_ratio)), 1.0)

    def probability_no_purchase(self, frequency, recency, age, horizon: float) -> np.ndarray:
        """P(no purchase in (T, T + horizon]) given the history."""
        x = np.asarray(frequency, dtype=float)
        T = np.asarray(age, dtype=float)
        alive = self.probability_alive(frequency, recency, age)
        quiet_if_alive = np.exp(
            (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + horizon))
        )
        return (1.0 - alive) + alive * quiet_if_alive

    def expected_purchases(self, frequency, recency, age, horizon: float) -> np.ndarray:
        """E[purchases in (T, T + horizon]] given the history (Fader et al. 2005, eq. 10)."""
        from scipy.special import hyp2f1

        x = np.asarray(frequency, dtype=float)
        T = np.asarray(age, dtype=float)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = horizon / (alpha + T + horizon)
        hyper = hyp2f1(r + x, b + x, a + b + x - 1, z)
        numerator = (
            (a + b + x - 1)
            / (a - 1)
            * (1 - ((alpha + T) / (alpha + T + horizon)) ** (r + x) * hyper)
        )
        return numerator * self.probability_alive(frequency, recency, age)
