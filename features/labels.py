"""Churn and upsell labels over a horizon after an as-of date (DESIGN.md, "Labels").

For an account active at the as-of date t (ARR(t) > 0) and a horizon of h days:

- churn = 1 when the account stops: subscriptions, ARR(t + h) = 0; orders,
  no positive order in (t, t + h].
- upsell = 1 when it grows: the level over the horizon reaches at least
  (1 + growth_threshold) x its level before t, and is positive. Subscriptions
  compare ARR(t + h) with ARR(t); orders the revenue in (t, t + h] with the
  revenue in (t - h, t].

Days are whole calendar days: (t, t + h] is the h days after the as-of day.
A label needs the data to reach t + h (`label_window_observed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.build import (
    AsOf,
    DataPeriod,
    FeatureError,
    FeatureSession,
    as_of_day,
    data_period,
    fill_dates,
)
from features.contract import Tables
from features.definitions import ARR_EPSILON

LABEL_COLUMNS: tuple[str, ...] = ("churn", "upsell")
DEFAULT_HORIZON_DAYS = 90
DEFAULT_GROWTH_THRESHOLD = 0.10
# Relative tolerance of the growth comparison (1.1 x 100 is 110.00000000000001 in floats).
GROWTH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LabelSettings:
    """The label definition's parameters."""

    horizon_days: int = DEFAULT_HORIZON_DAYS
    growth_threshold: float = DEFAULT_GROWTH_THRESHOLD

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise FeatureError(f"horizon_days must be at least 1 (got {self.horizon_days})")
        if self.growth_threshold < 0:
            raise FeatureError(f"growth_threshold must be 0 or more (got {self.growth_threshold})")


def label_sql(revenue_table: str, settings: LabelSettings) -> str:
    """The label query with `{as_of}`, `{cutoff}` and `{horizon_cutoff}` placeholders."""
    growth = 1 + settings.growth_threshold
    if revenue_table == "subscriptions":
        levels = (
            "SELECT account_id, "
            "coalesce(sum(arr) FILTER (WHERE start_date < {cutoff} "
            "AND (end_date IS NULL OR end_date >= {cutoff})), 0) AS level_before, "
            "coalesce(sum(arr) FILTER (WHERE end_date IS NULL OR end_date >= {horizon_cutoff}), 0) "
            "AS level_after, "
            "coalesce(sum(arr) FILTER (WHERE start_date < {cutoff} "
            "AND (end_date IS NULL OR end_date >= {cutoff})), 0) AS arr "
            "FROM subscriptions WHERE start_date < {horizon_cutoff} GROUP BY account_id"
        )
        churn = f"level_after <= {ARR_EPSILON}"
    elif revenue_table == "orders":
        lookback = max(365, settings.horizon_days)
        levels = (
            "SELECT account_id, "
            f"coalesce(sum(amount) FILTER (WHERE date < {{cutoff}} AND date >= {{cutoff}} - "
            f"INTERVAL '{settings.horizon_days}' DAY), 0) AS level_before, "
            "coalesce(sum(amount) FILTER (WHERE date >= {cutoff}), 0) AS level_after, "
            "count(*) FILTER (WHERE date >= {cutoff} AND amount > 0) AS positive_orders_after, "
            "coalesce(sum(amount) FILTER (WHERE date < {cutoff} AND date >= {cutoff} - "
            "INTERVAL '365' DAY), 0) AS arr "
            f"FROM orders WHERE date >= {{cutoff}} - INTERVAL '{lookback}' DAY "
            "AND date < {horizon_cutoff} GROUP BY account_id"
        )
        churn = "positive_orders_after = 0"
    else:
        raise FeatureError(f"{revenue_table!r} is not a revenue table")
    upsell = (
        f"level_after > {ARR_EPSILON} AND level_after >= {growth!r} * level_before "
        f"- {GROWTH_TOLERANCE} * abs(level_before)"
    )
    return (
        f"SELECT account_id, {{as_of}} AS as_of, CAST({churn} AS INTEGER) AS churn, "
        f"CAST({upsell} AS INTEGER) AS upsell FROM ({levels}) AS levels "
        f"WHERE arr > {ARR_EPSILON} ORDER BY account_id"
    )


def window_observed(period: DataPeriod, as_of: AsOf, horizon_days: int) -> bool:
    """Whether the data reaches the end of the label window (as_of + horizon)."""
    return as_of_day(as_of) + pd.Timedelta(days=horizon_days) <= period.last_day


def label_window_observed(
    tables: Tables, as_of: AsOf, horizon_days: int = DEFAULT_HORIZON_DAYS
) -> bool:
    """Whether the data extends to as_of + horizon_days (the last event date is on or after it)."""
    return window_observed(data_period(tables), as_of, horizon_days)


def session_labels(session: FeatureSession, as_of: AsOf, settings: LabelSettings) -> pd.DataFrame:
    """Labels at `as_of` over an open session (FeatureError when the window is not observed)."""
    day = as_of_day(as_of)
    if not window_observed(session.period, day, settings.horizon_days):
        raise FeatureError(
            f"the label window of as-of date {day.date()} ends on "
            f"{(day + pd.Timedelta(days=settings.horizon_days)).date()}, after the last date in "
            f"the data ({session.period.last_day.date()}): its labels are not known yet"
        )
    if day < session.period.first_day:
        raise FeatureError(
            f"as-of date {day.date()} is before all data: the first dated row is on "
            f"{session.period.first_day.date()}"
        )
    sql = fill_dates(label_sql(session.revenue_table, settings), day, settings.horizon_days)
    frame = session.query(sql)
    return frame.astype(
        {"account_id": "str", "as_of": "datetime64[ns]", "churn": "int64", "upsell": "int64"}
    )


def build_labels(
    tables: Tables,
    as_of: AsOf,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    growth_threshold: float = DEFAULT_GROWTH_THRESHOLD,
) -> pd.DataFrame:
    """account_id, as_of, churn, upsell (0/1) for every account active at `as_of`.

    Uses only the revenue rows up to as_of + horizon_days. Raises FeatureError
    when the data does not reach the end of the window.
    """
    settings = LabelSettings(horizon_days, growth_threshold)
    with FeatureSession(tables) as session:
        return session_labels(session, as_of, settings)


__all__ = [
    "DEFAULT_GROWTH_THRESHOLD",
    "DEFAULT_HORIZON_DAYS",
    "LABEL_COLUMNS",
    "LabelSettings",
    "build_labels",
    "label_sql",
    "label_window_observed",
]
