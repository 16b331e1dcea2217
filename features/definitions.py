"""The account feature set, declared once: what each feature means and how it is computed.

Every feature is a `FeatureSpec`: a name, a family, the contract table it comes
from, its kind, a description, a sentence template used for reasons, and a
SQL expression. Each family is a `FamilyQuery`: one or more aggregate blocks
(`AggregateBlock`), each a `GROUP BY account_id` over rows of one contract
table. The feature expressions combine the aggregates of their family.

The SQL is DuckDB SQL with two placeholders, filled per as-of date:

- `{as_of}`: the as-of day (a TIMESTAMP at midnight);
- `{cutoff}`: the day after it. A row is known at the as-of date when its
  event date is before `{cutoff}` (the whole as-of day counts as known).

A window of N days is the N calendar days that end on the as-of day:
`date >= {cutoff} - INTERVAL 'N' DAY AND date < {cutoff}`. Every block filters
its source rows on the table's event date (`features.contract`) before
anything else, so a row dated after the as-of date never reaches a feature.

The SQL sticks to constructs sqlglot transpiles to Spark SQL (aggregate
FILTER clauses, window functions, `epoch`, `make_date`), so another engine can
run the same definitions. `features.build` compiles them into one query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

FEATURE_SET_NAME = "account_features"
# Bump when a definition changes: models record the version they were trained on.
FEATURE_SET_VERSION = "1.0"

FeatureKind = Literal["numeric", "categorical"]

# The `source` of the revenue family: the revenue table (subscriptions if given, else orders).
REVENUE_SOURCE = "revenue"

# ARR below this is zero (sums of credits and refunds leave floating-point dust).
ARR_EPSILON = 1e-9


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: what it means, where it comes from, how to say it, how to compute it."""

    name: str
    family: str
    # The contract table it is computed from ("revenue" = the revenue table).
    source: str
    kind: FeatureKind
    description: str
    # A sentence for reasons, formatted with `value`, `abs_value` and `direction`
    # ("rose" / "fell" / "was unchanged"), e.g. "Seat utilisation {direction} {abs_value:.0%} in 12 weeks".
    template: str
    # SQL over the aggregates of the family's blocks (and `{as_of}` / `{cutoff}`).
    sql: str = field(repr=False, default="")
    # Optional source columns it needs: a table without one of them -> the feature is left
    # out; a column without any value in the rows known at the as-of date -> it is missing.
    requires: tuple[str, ...] = ()
    # The value for an active account without rows in the source (counts: 0); None -> missing.
    fill_value: float | None = None

    def describe(self, value: object) -> str:
        """The template filled with `value`; a missing value says so instead of formatting it."""
        if _is_missing(value):
            return f"{self.description}: unknown"
        if self.kind == "categorical":
            return self.template.format(value=value, abs_value=value, direction="is")
        number = float(value)  # type: ignore[arg-type]
        direction = "rose" if number > 0 else "fell" if number < 0 else "was unchanged"
        return self.template.format(value=number, abs_value=abs(number), direction=direction)


@dataclass(frozen=True)
class RowWindow:
    """Rows whose date `column` falls in the `days` calendar days ending on the as-of day."""

    column: str
    days: int

    @property
    def sql(self) -> str:
        """The condition, for a block's WHERE clause."""
        return f"{self.column} < {{cutoff}} AND {_within(self.days, self.column)}"


@dataclass(frozen=True)
class AggregateBlock:
    """A `GROUP BY account_id` over `rows` (a SELECT that yields account_id and columns).

    An account's aggregates come from that account's rows alone (and from
    `spine`, the active accounts, for a block that reads it), so an engine
    may hand a block only the rows of the accounts whose features it needs.
    `window`, when set, says that `rows` reads only the rows of the family's
    table inside it (its WHERE clause holds `window.sql` for every row it
    reads), so an engine may hand the block those rows alone: a block over
    the last weeks of a long table then scans the weeks rather than the table.
    """

    name: str
    rows: str
    aggregates: dict[str, str]
    window: RowWindow | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.window.sql not in self.rows:
            raise ValueError(f"block {self.name!r}: its rows do not filter on its window")


@dataclass(frozen=True)
class FamilyQuery:
    """How one family is computed from one contract table."""

    family: str
    source: str  # the contract table read
    blocks: tuple[AggregateBlock, ...]


def _within(days: int, column: str) -> str:
    """`column` falls in the `days` calendar days ending on the as-of day."""
    return f"{column} >= {{cutoff}} - INTERVAL '{days}' DAY"


def _before(days: int, column: str) -> str:
    """`column` is before the `days` calendar days ending on the as-of day."""
    return f"{column} < {{cutoff}} - INTERVAL '{days}' DAY"


def _days_since(column: str) -> str:
    """Days from `column` to the as-of date (fractional when `column` has a time)."""
    return f"(epoch({{as_of}}) - epoch({column})) / 86400.0"


def _ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, missing unless the denominator is positive."""
    return f"CASE WHEN {denominator} > 0 THEN {numerator} / {denominator} END"


def _change(recent: str, earlier: str) -> str:
    """Relative change recent / earlier - 1, missing unless `earlier` is positive."""
    return f"CASE WHEN {earlier} > 0 THEN {recent} / {earlier} - 1 END"


# ---------------------------------------------------------------- revenue

ARR_CHANGE_DAYS = (30, 90, 180, 365)


def _active_subscription(days_before: int) -> str:
    """The subscription is active at the end of the day `days_before` days before as-of."""
    point = "{cutoff}" if days_before == 0 else f"{{cutoff}} - INTERVAL '{days_before}' DAY"
    return f"start_date < {point} AND (end_date IS NULL OR end_date >= {point})"


def _orders_year_before(days_before: int) -> str:
    """The order falls in the 365 days ending `days_before` days before as-of."""
    end = "{cutoff}" if days_before == 0 else f"{{cutoff}} - INTERVAL '{days_before}' DAY"
    return f"date >= {end} - INTERVAL '365' DAY AND date < {end}"


REVENUE_FROM_SUBSCRIPTIONS = FamilyQuery(
    "revenue",
    "subscriptions",
    (
        AggregateBlock(
            "arr",
            "SELECT * FROM subscriptions WHERE start_date < {cutoff}",
            {
                "arr": f"coalesce(sum(arr) FILTER (WHERE {_active_subscription(0)}), 0)",
                **{
                    f"arr_{days}d_ago": (
                        f"coalesce(sum(arr) FILTER (WHERE {_active_subscription(days)}), 0)"
                    )
                    for days in ARR_CHANGE_DAYS
                },
                "first_revenue_date": "min(start_date)",
            },
        ),
    ),
)

REVENUE_FROM_ORDERS = FamilyQuery(
    "revenue",
    "orders",
    (
        AggregateBlock(
            "arr",
            "SELECT * FROM orders WHERE date < {cutoff}",
            {
                "arr": f"coalesce(sum(amount) FILTER (WHERE {_orders_year_before(0)}), 0)",
                **{
                    f"arr_{days}d_ago": (
                        f"coalesce(sum(amount) FILTER (WHERE {_orders_year_before(days)}), 0)"
                    )
                    for days in ARR_CHANGE_DAYS
                },
                "first_revenue_date": "min(date)",
            },
        ),
    ),
)

REVENUE_FEATURES = [
    FeatureSpec(
        "arr",
        "revenue",
        REVENUE_SOURCE,
        "numeric",
        "Annual recurring revenue at the as-of date (subscriptions: active contracts; "
        "orders: revenue in the last 365 days)",
        "ARR is {value:,.0f}",
        "arr",
    ),
    *[
        FeatureSpec(
            f"arr_change_{days}d",
            "revenue",
            REVENUE_SOURCE,
            "numeric",
            f"Relative change of ARR over the last {days} days",
            f"ARR {{direction}} {{abs_value:.0%}} in {days} days",
            _change("arr", f"arr_{days}d_ago"),
        )
        for days in ARR_CHANGE_DAYS
    ],
    FeatureSpec(
        "tenure_days",
        "revenue",
        REVENUE_SOURCE,
        "numeric",
        "Days since the first subscription or order",
        "Customer for {value:,.0f} days",
        _days_since("first_revenue_date"),
    ),
]

# ---------------------------------------------------------------- subscriptions

_NEXT_ANNIVERSARY_THIS_YEAR = (
    "make_date(year({as_of}), month(start_date), "
    "CASE WHEN month(start_date) = 2 AND day(start_date) = 29 THEN 28 ELSE day(start_date) END)"
)
_NEXT_ANNIVERSARY_NEXT_YEAR = (
    "make_date(year({as_of}) + 1, month(start_date), "
    "CASE WHEN month(start_date) = 2 AND day(start_date) = 29 THEN 28 ELSE day(start_date) END)"
)
# The next anniversary of start_date after the as-of day. The end_date of a running
# contract is not used: it is often recorded only when the contract ends (a leak).
_NEXT_RENEWAL = (
    f"CASE WHEN CAST({_NEXT_ANNIVERSARY_THIS_YEAR} AS TIMESTAMP) > {{as_of}} "
    f"THEN CAST({_NEXT_ANNIVERSARY_THIS_YEAR} AS TIMESTAMP) "
    f"ELSE CAST({_NEXT_ANNIVERSARY_NEXT_YEAR} AS TIMESTAMP) END"
)
_ACTIVE_NOW = "(end_date IS NULL OR end_date >= {cutoff})"

SUBSCRIPTIONS = FamilyQuery(
    "subscriptions",
    "subscriptions",
    (
        AggregateBlock(
            "active",
            "SELECT s.*, largest.largest_active_arr FROM subscriptions AS s LEFT JOIN "
            "(SELECT account_id, max(arr) AS largest_active_arr FROM subscriptions "
            f"WHERE start_date < {{cutoff}} AND {_ACTIVE_NOW} GROUP BY account_id) AS largest "
            "ON largest.account_id = s.account_id WHERE s.start_date < {cutoff}",
            {
                "active_count": f"count(*) FILTER (WHERE {_ACTIVE_NOW})",
                "active_arr": f"sum(arr) FILTER (WHERE {_ACTIVE_NOW})",
                "active_seats": f"sum(seats) FILTER (WHERE {_ACTIVE_NOW})",
                "next_renewal": f"min({_NEXT_RENEWAL}) FILTER (WHERE {_ACTIVE_NOW})",
                "main_plan": (
                    f"min(plan) FILTER (WHERE {_ACTIVE_NOW} AND arr = largest_active_arr)"
                ),
            },
        ),
        # ARR as a series of daily changes (starts add, ends subtract), for up/downgrades.
        AggregateBlock(
            "changes",
            "SELECT account_id, day, delta, sum(delta) OVER (PARTITION BY account_id ORDER BY day "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS arr_after "
            "FROM (SELECT account_id, day, sum(delta) AS delta FROM ("
            "SELECT account_id, start_date AS day, arr AS delta FROM subscriptions "
            "WHERE start_date < {cutoff} "
            "UNION ALL SELECT account_id, end_date AS day, -arr AS delta FROM subscriptions "
            "WHERE start_date < {cutoff} AND end_date < {cutoff}) AS events "
            "GROUP BY account_id, day) AS daily",
            {
                "downgrades": (
                    f"count(*) FILTER (WHERE {_within(365, 'day')} AND delta < -{ARR_EPSILON} "
                    f"AND arr_after > {ARR_EPSILON})"
                ),
                "upgrades": (
                    f"count(*) FILTER (WHERE {_within(365, 'day')} AND delta > {ARR_EPSILON} "
                    f"AND arr_after - delta > {ARR_EPSILON})"
                ),
            },
        ),
    ),
)

SUBSCRIPTION_FEATURES = [
    FeatureSpec(
        "subscriptions_active",
        "subscriptions",
        "subscriptions",
        "numeric",
        "Number of active subscriptions (contracts)",
        "{value:.0f} active contracts",
        "active_count",
        fill_value=0.0,
    ),
    FeatureSpec(
        "days_to_renewal",
        "subscriptions",
        "subscriptions",
        "numeric",
        "Days to the next anniversary of an active subscription's start date",
        "Renewal in {value:.0f} days",
        "(epoch(next_renewal) - epoch({as_of})) / 86400.0",
    ),
    FeatureSpec(
        "seats",
        "subscriptions",
        "subscriptions",
        "numeric",
        "Seats licensed on active subscriptions",
        "{value:,.0f} seats licensed",
        "active_seats",
        requires=("seats",),
    ),
    FeatureSpec(
        "price_per_seat",
        "subscriptions",
        "subscriptions",
        "numeric",
        "ARR per licensed seat on active subscriptions",
        "ARR per seat is {value:,.0f}",
        _ratio("active_arr", "active_seats"),
        requires=("seats",),
    ),
    FeatureSpec(
        "plan",
        "subscriptions",
        "subscriptions",
        "categorical",
        "Plan of the largest active subscription",
        "Plan is {value}",
        "main_plan",
        requires=("plan",),
    ),
    FeatureSpec(
        "downgrades_365d",
        "subscriptions",
        "subscriptions",
        "numeric",
        "Days in the last 365 on which ARR fell but stayed above zero (downgrades, partial churn)",
        "{value:.0f} downgrades in the last year",
        "downgrades",
        fill_value=0.0,
    ),
    FeatureSpec(
        "upgrades_365d",
        "subscriptions",
        "subscriptions",
        "numeric",
        "Days in the last 365 on which the ARR of an existing customer rose (upgrades)",
        "{value:.0f} upgrades in the last year",
        "upgrades",
        fill_value=0.0,
    ),
]

# ---------------------------------------------------------------- orders

_ORDERS_YEAR = RowWindow("date", 365)

ORDERS = FamilyQuery(
    "orders",
    "orders",
    (
        # One row per account and day with a positive order, with the gap to the previous one.
        AggregateBlock(
            "order_days",
            "SELECT account_id, day, (epoch(day) - epoch(lag(day) OVER "
            "(PARTITION BY account_id ORDER BY day))) / 86400.0 AS gap_days "
            "FROM (SELECT DISTINCT account_id, CAST(date_trunc('day', date) AS TIMESTAMP) AS day "
            "FROM orders WHERE date < {cutoff} AND amount > 0) AS days",
            {
                "last_order_day": "max(day)",
                "gap_mean": "avg(gap_days)",
                "gap_std": "stddev_samp(gap_days)",
            },
        ),
        AggregateBlock(
            "orders_year",
            f"SELECT * FROM orders WHERE {_ORDERS_YEAR.sql}",
            {
                "positive_orders": "count(*) FILTER (WHERE amount > 0)",
                "positive_value_mean": "avg(amount) FILTER (WHERE amount > 0)",
                "revenue_recent": f"coalesce(sum(amount) FILTER (WHERE {_within(180, 'date')}), 0)",
                "revenue_earlier": (
                    f"coalesce(sum(amount) FILTER (WHERE {_before(180, 'date')} "
                    f"AND {_within(360, 'date')}), 0)"
                ),
                "product_lines": "count(DISTINCT product_line) FILTER (WHERE amount > 0)",
                "margin_sum": "sum(margin)",
                "margin_amount": "sum(amount) FILTER (WHERE margin IS NOT NULL)",
            },
            window=_ORDERS_YEAR,
        ),
    ),
)

ORDER_FEATURES = [
    FeatureSpec(
        "order_recency_days",
        "orders",
        "orders",
        "numeric",
        "Days since the last order",
        "Last order {value:.0f} days ago",
        _days_since("last_order_day"),
    ),
    FeatureSpec(
        "order_frequency_365d",
        "orders",
        "orders",
        "numeric",
        "Number of orders in the last 365 days",
        "{value:.0f} orders in the last year",
        "positive_orders",
        fill_value=0.0,
    ),
    FeatureSpec(
        "order_value_mean_365d",
        "orders",
        "orders",
        "numeric",
        "Mean order value in the last 365 days",
        "Average order is {value:,.0f}",
        "positive_value_mean",
    ),
    FeatureSpec(
        "order_revenue_trend_180d",
        "orders",
        "orders",
        "numeric",
        "Relative change of revenue in the last 180 days versus the 180 days before",
        "Order revenue {direction} {abs_value:.0%} on the previous half-year",
        _change("revenue_recent", "revenue_earlier"),
    ),
    FeatureSpec(
        "order_gap_mean_days",
        "orders",
        "orders",
        "numeric",
        "Mean number of days between order days",
        "Orders every {value:.0f} days on average",
        "gap_mean",
    ),
    FeatureSpec(
        "order_gap_cv",
        "orders",
        "orders",
        "numeric",
        "Irregularity of ordering: standard deviation / mean of the gaps between order days",
        "Order timing irregularity is {value:.2f}",
        _ratio("gap_std", "gap_mean"),
    ),
    FeatureSpec(
        "order_overdue_ratio",
        "orders",
        "orders",
        "numeric",
        "Days since the last order divided by the mean gap between orders (above 1: overdue)",
        "Next order is {value:.1f}x the usual gap away",
        _ratio(_days_since("last_order_day"), "gap_mean"),
    ),
    FeatureSpec(
        "product_lines_365d",
        "orders",
        "orders",
        "numeric",
        "Distinct product lines ordered in the last 365 days",
        "Buys {value:.0f} product lines",
        "product_lines",
        requires=("product_line",),
    ),
    FeatureSpec(
        "margin_rate_365d",
        "orders",
        "orders",
        "numeric",
        "Gross margin / revenue of the orders of the last 365 days",
        "Margin is {value:.0%}",
        _ratio("margin_sum", "margin_amount"),
        requires=("margin",),
    ),
]

# ---------------------------------------------------------------- usage

_UTILISATION_ROW = "active_users IS NOT NULL AND seats_licensed > 0"
# A usage row shows activity when it has active users or events, or says nothing about either.
_ACTIVE_ROW = "(active_users > 0 OR events > 0 OR (active_users IS NULL AND events IS NULL))"


# The last 24 weeks in four periods: 0 = the last 4 weeks, 1 = the 4 before, 2 = the 4 before
# those, 3 = the 12 weeks before the last 12. "28d" = period 0, "84d" = periods 0-2.
_USAGE_PERIOD = (
    f"CASE WHEN {_within(28, 'date')} THEN 0 WHEN {_within(56, 'date')} THEN 1 "
    f"WHEN {_within(84, 'date')} THEN 2 ELSE 3 END"
)
USAGE_PERIODS = {
    "28d": "period = 0",
    "prev_28d": "period = 1",
    "84d": "period < 3",
    "prev_84d": "period = 3",
}
_EVENTS_PER_USER_ROW = "active_users > 0 AND events IS NOT NULL"

# The rows of the window block: the last 24 weeks.
_USAGE_WINDOWS = RowWindow("date", 168)

USAGE = FamilyQuery(
    "usage",
    "usage",
    (
        # The windows (the last 24 weeks) and the whole history are separate passes: the
        # windows read a sixth of the rows of a three-year table. The windows first sum
        # per account and period, so that each row updates a few plain sums only.
        AggregateBlock(
            "windows",
            "SELECT account_id, period, "
            f"sum(CASE WHEN {_UTILISATION_ROW} THEN active_users END) AS utilisation_users, "
            f"sum(CASE WHEN {_UTILISATION_ROW} THEN seats_licensed END) AS utilisation_seats, "
            "sum(active_users) AS users, count(active_users) AS user_rows, "
            f"sum(CASE WHEN {_EVENTS_PER_USER_ROW} THEN events END) AS epu_events, "
            f"sum(CASE WHEN {_EVENTS_PER_USER_ROW} THEN active_users END) AS epu_users, "
            "sum(events) AS events, sum(events * events) AS events_squared, "
            "count(events) AS event_rows "
            f"FROM (SELECT account_id, {_USAGE_PERIOD} AS period, active_users, events, "
            f"seats_licensed FROM usage WHERE {_USAGE_WINDOWS.sql}) "
            "AS recent GROUP BY account_id, period",
            {
                **{
                    f"users_{name}": f"sum(utilisation_users) FILTER (WHERE {period})"
                    for name, period in USAGE_PERIODS.items()
                },
                **{
                    f"seats_{name}": f"sum(utilisation_seats) FILTER (WHERE {period})"
                    for name, period in USAGE_PERIODS.items()
                },
                "users_sum_28d": "sum(users) FILTER (WHERE period = 0)",
                "user_rows_28d": "sum(user_rows) FILTER (WHERE period = 0)",
                "epu_events_28d": "sum(epu_events) FILTER (WHERE period = 0)",
                "epu_users_28d": "sum(epu_users) FILTER (WHERE period = 0)",
                "events_84d": "sum(events) FILTER (WHERE period < 3)",
                "events_prev_84d": "sum(events) FILTER (WHERE period = 3)",
                "events_squared_84d": "sum(events_squared) FILTER (WHERE period < 3)",
                "event_rows_84d": "sum(event_rows) FILTER (WHERE period < 3)",
            },
            window=_USAGE_WINDOWS,
        ),
        AggregateBlock(
            "history",
            f"SELECT account_id, date FROM usage WHERE date < {{cutoff}} AND {_ACTIVE_ROW}",
            {"last_active_day": "max(date)"},
        ),
    ),
)


def _utilisation(period: str) -> str:
    return _ratio(f"users_{period}", f"seats_{period}")


USAGE_FEATURES = [
    FeatureSpec(
        "seat_utilisation_28d",
        "usage",
        "usage",
        "numeric",
        "Seat utilisation (active users / licensed seats) over the last 28 days",
        "Seat utilisation is {value:.0%}",
        _utilisation("28d"),
        requires=("active_users", "seats_licensed"),
    ),
    FeatureSpec(
        "seat_utilisation_change_4w",
        "usage",
        "usage",
        "numeric",
        "Relative change of seat utilisation: last 4 weeks versus the 4 weeks before",
        "Seat utilisation {direction} {abs_value:.0%} in 4 weeks",
        _change(_utilisation("28d"), _utilisation("prev_28d")),
        requires=("active_users", "seats_licensed"),
    ),
    FeatureSpec(
        "seat_utilisation_change_12w",
        "usage",
        "usage",
        "numeric",
        "Relative change of seat utilisation: last 12 weeks versus the 12 weeks before",
        "Seat utilisation {direction} {abs_value:.0%} in 12 weeks",
        _change(_utilisation("84d"), _utilisation("prev_84d")),
        requires=("active_users", "seats_licensed"),
    ),
    FeatureSpec(
        "active_users_mean_28d",
        "usage",
        "usage",
        "numeric",
        "Mean active users per usage row (day or week) over the last 28 days",
        "{value:,.1f} active users on average",
        _ratio("users_sum_28d", "user_rows_28d"),
        requires=("active_users",),
    ),
    FeatureSpec(
        "events_per_active_user_28d",
        "usage",
        "usage",
        "numeric",
        "Product events per active user over the last 28 days",
        "{value:,.1f} events per active user",
        _ratio("epu_events_28d", "epu_users_28d"),
        requires=("active_users", "events"),
    ),
    FeatureSpec(
        "events_change_12w",
        "usage",
        "usage",
        "numeric",
        "Relative change of product events: last 12 weeks versus the 12 weeks before",
        "Product usage {direction} {abs_value:.0%} in 12 weeks",
        _change("events_84d", "events_prev_84d"),
        requires=("events",),
    ),
    FeatureSpec(
        "events_volatility_12w",
        "usage",
        "usage",
        "numeric",
        "Volatility of product events over the last 12 weeks (standard deviation / mean per row)",
        "Usage volatility is {value:.2f}",
        # sample standard deviation / mean, from the sums of the 12 weeks' rows
        "CASE WHEN event_rows_84d >= 2 AND events_84d > 0 THEN sqrt(greatest((events_squared_84d "
        "- events_84d * events_84d / event_rows_84d) / (event_rows_84d - 1), 0)) "
        "/ (events_84d / event_rows_84d) END",
        requires=("events",),
    ),
    FeatureSpec(
        "days_since_last_activity",
        "usage",
        "usage",
        "numeric",
        "Days since the last usage row with activity",
        "Last product activity {value:.0f} days ago",
        _days_since("last_active_day"),
    ),
]

# ---------------------------------------------------------------- support

_HIGH_PRIORITY = "lower(priority) IN ('high', 'urgent', 'critical')"
_CLOSED_BY_AS_OF = "closed_at < {cutoff}"

_SUPPORT_WINDOW = RowWindow("created_at", 180)

SUPPORT = FamilyQuery(
    "support",
    "support_tickets",
    (
        AggregateBlock(
            "tickets",
            f"SELECT * FROM support_tickets WHERE {_SUPPORT_WINDOW.sql}",
            {
                "tickets_30d": f"count(*) FILTER (WHERE {_within(30, 'created_at')})",
                "tickets_90d": f"count(*) FILTER (WHERE {_within(90, 'created_at')})",
                "high_90d": (
                    f"count(*) FILTER (WHERE {_within(90, 'created_at')} AND {_HIGH_PRIORITY})"
                ),
                "prioritised_90d": (
                    f"count(*) FILTER (WHERE {_within(90, 'created_at')} AND priority IS NOT NULL)"
                ),
                "resolution_hours": (
                    "avg((epoch(closed_at) - epoch(created_at)) / 3600.0) FILTER (WHERE "
                    f"{_CLOSED_BY_AS_OF} AND closed_at >= created_at)"
                ),
                "open_tickets": "count(*) FILTER (WHERE closed_at IS NULL OR closed_at >= {cutoff})",
                "csat_mean": (f"avg(csat) FILTER (WHERE closed_at IS NULL OR {_CLOSED_BY_AS_OF})"),
            },
            window=_SUPPORT_WINDOW,
        ),
    ),
)

SUPPORT_FEATURES = [
    FeatureSpec(
        "support_tickets_30d",
        "support",
        "support_tickets",
        "numeric",
        "Support tickets opened in the last 30 days",
        "{value:.0f} support tickets in 30 days",
        "tickets_30d",
        fill_value=0.0,
    ),
    FeatureSpec(
        "support_tickets_90d",
        "support",
        "support_tickets",
        "numeric",
        "Support tickets opened in the last 90 days",
        "{value:.0f} support tickets in 90 days",
        "tickets_90d",
        fill_value=0.0,
    ),
    FeatureSpec(
        "support_high_priority_share_90d",
        "support",
        "support_tickets",
        "numeric",
        "Share of high or urgent priority among the tickets of the last 90 days",
        "{value:.0%} of recent tickets are high priority",
        _ratio("high_90d", "prioritised_90d"),
        requires=("priority",),
    ),
    FeatureSpec(
        "support_resolution_hours_180d",
        "support",
        "support_tickets",
        "numeric",
        "Mean hours to close the tickets opened in the last 180 days and closed by the as-of date",
        "Tickets take {value:,.0f} hours to resolve",
        "resolution_hours",
        requires=("closed_at",),
    ),
    FeatureSpec(
        "support_open_tickets",
        "support",
        "support_tickets",
        "numeric",
        "Tickets opened in the last 180 days and still open at the as-of date",
        "{value:.0f} open support tickets",
        "open_tickets",
        requires=("closed_at",),
        fill_value=0.0,
    ),
    FeatureSpec(
        "support_csat_mean_180d",
        "support",
        "support_tickets",
        "numeric",
        "Mean CSAT of the tickets of the last 180 days (rated by the as-of date)",
        "Support satisfaction is {value:.1f}",
        "csat_mean",
        requires=("csat",),
    ),
]

# ---------------------------------------------------------------- opportunities

_OPEN_AT_AS_OF = (
    "(closed_at >= {cutoff} OR (closed_at IS NULL "
    "AND coalesce(lower(stage), 'open') NOT IN ('won', 'lost')))"
)


def _closed_as(stage: str) -> str:
    return f"lower(stage) = '{stage}' AND closed_at < {{cutoff}} AND {_within(180, 'closed_at')}"


_OPPORTUNITIES_WINDOW = RowWindow("created_at", 730)

OPPORTUNITIES = FamilyQuery(
    "opportunities",
    "opportunities",
    (
        AggregateBlock(
            "opportunities",
            f"SELECT * FROM opportunities WHERE {_OPPORTUNITIES_WINDOW.sql}",
            {
                "open_count": f"count(*) FILTER (WHERE {_OPEN_AT_AS_OF})",
                "open_amount": f"sum(amount) FILTER (WHERE {_OPEN_AT_AS_OF})",
                "open_expansion_amount": (
                    f"sum(amount) FILTER (WHERE {_OPEN_AT_AS_OF} AND lower(kind) = 'expansion')"
                ),
                "won_180d": f"count(*) FILTER (WHERE {_closed_as('won')})",
                "lost_180d": f"count(*) FILTER (WHERE {_closed_as('lost')})",
            },
            window=_OPPORTUNITIES_WINDOW,
        ),
    ),
)

OPPORTUNITY_FEATURES = [
    FeatureSpec(
        "opportunities_open",
        "opportunities",
        "opportunities",
        "numeric",
        "Open opportunities (created in the last 730 days, not closed at the as-of date)",
        "{value:.0f} open opportunities",
        "open_count",
        fill_value=0.0,
    ),
    FeatureSpec(
        "pipeline_open_amount",
        "opportunities",
        "opportunities",
        "numeric",
        "Amount of the open opportunities",
        "Open pipeline of {value:,.0f}",
        "open_amount",
        requires=("amount",),
        fill_value=0.0,
    ),
    FeatureSpec(
        "pipeline_expansion_amount",
        "opportunities",
        "opportunities",
        "numeric",
        "Amount of the open expansion opportunities",
        "Open expansion pipeline of {value:,.0f}",
        "open_expansion_amount",
        requires=("amount", "kind"),
        fill_value=0.0,
    ),
    FeatureSpec(
        "opportunities_won_180d",
        "opportunities",
        "opportunities",
        "numeric",
        "Opportunities won in the last 180 days",
        "{value:.0f} deals won in 180 days",
        "won_180d",
        requires=("stage", "closed_at"),
        fill_value=0.0,
    ),
    FeatureSpec(
        "opportunities_lost_180d",
        "opportunities",
        "opportunities",
        "numeric",
        "Opportunities lost in the last 180 days",
        "{value:.0f} deals lost in 180 days",
        "lost_180d",
        requires=("stage", "closed_at"),
        fill_value=0.0,
    ),
]

# ---------------------------------------------------------------- NPS

_NPS_DAYS = (
    "SELECT account_id, CAST(date_trunc('day', date) AS TIMESTAMP) AS day, avg(score) AS score "
    "FROM nps WHERE date < {cutoff} AND score IS NOT NULL "
    "GROUP BY account_id, CAST(date_trunc('day', date) AS TIMESTAMP)"
)

NPS = FamilyQuery(
    "nps",
    "nps",
    (
        # One answer per account and day (the day's mean), with the account's latest day.
        AggregateBlock(
            "answers",
            f"SELECT days.account_id, days.day, days.score, latest.last_day FROM ({_NPS_DAYS}) "
            f"AS days JOIN (SELECT account_id, max(day) AS last_day FROM ({_NPS_DAYS}) AS d "
            "GROUP BY account_id) AS latest ON latest.account_id = days.account_id",
            {
                "last_score": "max(score) FILTER (WHERE day = last_day)",
                "previous_score": "arg_max(score, day) FILTER (WHERE day < last_day)",
            },
        ),
    ),
)

NPS_FEATURES = [
    FeatureSpec(
        "nps_last",
        "nps",
        "nps",
        "numeric",
        "The latest NPS answer (0-10)",
        "Last NPS answer was {value:.0f}",
        "last_score",
        requires=("score",),
    ),
    FeatureSpec(
        "nps_change",
        "nps",
        "nps",
        "numeric",
        "The latest NPS answer minus the one before",
        "NPS {direction} {abs_value:.0f} points",
        "last_score - previous_score",
        requires=("score",),
    ),
]

# ---------------------------------------------------------------- invoices

_PAID_BY_AS_OF = "(paid_at IS NOT NULL AND paid_at < {cutoff})"
_OVERDUE_AT_AS_OF = f"(NOT {_PAID_BY_AS_OF} AND due_date < {{as_of}})"
_PAID_LATE = f"({_PAID_BY_AS_OF} AND paid_at >= due_date + INTERVAL '1' DAY)"
_DAYS_LATE = (
    f"greatest((epoch(CASE WHEN {_PAID_BY_AS_OF} THEN paid_at ELSE {{as_of}} END) "
    "- epoch(due_date)) / 86400.0, 0)"
)

_INVOICES_WINDOW = RowWindow("due_date", 365)

INVOICES = FamilyQuery(
    "invoices",
    "invoices",
    (
        AggregateBlock(
            "invoices",
            f"SELECT * FROM invoices WHERE {_INVOICES_WINDOW.sql}",
            {
                "due": "count(*)",
                "late": f"count(*) FILTER (WHERE {_PAID_LATE} OR {_OVERDUE_AT_AS_OF})",
                "days_late_mean": f"avg({_DAYS_LATE})",
                "overdue_amount": f"sum(amount) FILTER (WHERE {_OVERDUE_AT_AS_OF})",
            },
            window=_INVOICES_WINDOW,
        ),
    ),
)

INVOICE_FEATURES = [
    FeatureSpec(
        "invoices_late_365d",
        "invoices",
        "invoices",
        "numeric",
        "Invoices due in the last 365 days that were paid late or are unpaid past due",
        "{value:.0f} late payments in the last year",
        "late",
        requires=("paid_at",),
        fill_value=0.0,
    ),
    FeatureSpec(
        "invoices_late_share_365d",
        "invoices",
        "invoices",
        "numeric",
        "Share of the invoices due in the last 365 days that were paid late or are overdue",
        "{value:.0%} of invoices paid late",
        _ratio("late", "due"),
        requires=("paid_at",),
    ),
    FeatureSpec(
        "invoice_days_late_mean_365d",
        "invoices",
        "invoices",
        "numeric",
        "Mean days late of the invoices due in the last 365 days (0 when paid on time)",
        "Invoices paid {value:.0f} days late on average",
        "days_late_mean",
        requires=("paid_at",),
    ),
    FeatureSpec(
        "overdue_amount",
        "invoices",
        "invoices",
        "numeric",
        "Amount of the invoices due in the last 365 days and unpaid past their due date",
        "{value:,.0f} overdue",
        "overdue_amount",
        requires=("paid_at", "amount"),
        fill_value=0.0,
    ),
]

# ---------------------------------------------------------------- firmographics

# `spine` is the set of active accounts with their ARR (see features.build).
FIRMOGRAPHICS = FamilyQuery(
    "firmographics",
    "accounts",
    (
        AggregateBlock(
            "accounts",
            "SELECT s.account_id, a.segment, a.industry, a.region, a.employees, a.created_at, "
            "s.arr / sum(s.arr) OVER (PARTITION BY coalesce(a.parent_account_id, s.account_id)) "
            "AS parent_arr_share "
            "FROM spine AS s JOIN (SELECT account_id, min(parent_account_id) AS parent_account_id, "
            "min(segment) AS segment, min(industry) AS industry, min(region) AS region, "
            "min(employees) AS employees, min(created_at) AS created_at "
            "FROM accounts GROUP BY account_id) AS a ON a.account_id = s.account_id",
            {
                "segment": "min(segment)",
                "industry": "min(industry)",
                "region": "min(region)",
                "employees": "min(employees)",
                "created_at": "min(created_at) FILTER (WHERE created_at < {cutoff})",
                "parent_arr_share": "min(parent_arr_share)",
            },
        ),
    ),
)

FIRMOGRAPHIC_FEATURES = [
    *[
        FeatureSpec(
            column,
            "firmographics",
            "accounts",
            "categorical",
            f"The account's {column} (CRM)",
            f"{column.capitalize()} is {{value}}",
            column,
            requires=(column,),
        )
        for column in ("segment", "industry", "region")
    ],
    FeatureSpec(
        "employees",
        "firmographics",
        "accounts",
        "numeric",
        "Number of employees (CRM)",
        "{value:,.0f} employees",
        "employees",
        requires=("employees",),
    ),
    FeatureSpec(
        "account_age_days",
        "firmographics",
        "accounts",
        "numeric",
        "Days since the account was created in the CRM",
        "Account created {value:,.0f} days ago",
        _days_since("created_at"),
        requires=("created_at",),
    ),
    FeatureSpec(
        "parent_arr_share",
        "firmographics",
        "accounts",
        "numeric",
        "The account's share of its parent group's ARR (parent and its children, active ones)",
        "{value:.0%} of the parent group's ARR",
        "parent_arr_share",
        requires=("parent_account_id",),
    ),
]

# ---------------------------------------------------------------- the feature set

FAMILY_QUERIES: tuple[FamilyQuery, ...] = (
    REVENUE_FROM_SUBSCRIPTIONS,
    REVENUE_FROM_ORDERS,
    SUBSCRIPTIONS,
    ORDERS,
    USAGE,
    SUPPORT,
    OPPORTUNITIES,
    NPS,
    INVOICES,
    FIRMOGRAPHICS,
)

FEATURES: dict[str, FeatureSpec] = {
    spec.name: spec
    for spec in (
        *REVENUE_FEATURES,
        *SUBSCRIPTION_FEATURES,
        *ORDER_FEATURES,
        *USAGE_FEATURES,
        *SUPPORT_FEATURES,
        *OPPORTUNITY_FEATURES,
        *NPS_FEATURES,
        *INVOICE_FEATURES,
        *FIRMOGRAPHIC_FEATURES,
    )
}

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(spec.family for spec in FEATURES.values()))


def feature_specs(columns: Iterable[str]) -> list[FeatureSpec]:
    """The specs of the feature columns among `columns` (others, e.g. account_id, are skipped)."""
    return [FEATURES[column] for column in columns if column in FEATURES]


def family_features(family: str) -> list[FeatureSpec]:
    """The features of one family, in declaration order."""
    return [spec for spec in FEATURES.values() if spec.family == family]


def _is_missing(value: object) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))
