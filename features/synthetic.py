"""A synthetic B2B account portfolio with a known ground truth.

`generate_portfolio(settings)` simulates a company's customer base month by
month and returns the contract tables (typed exactly as `features.sources`
loads them) plus the ground truth: for every account active at the start of a
month, the true probabilities of churning and of expanding that were used to
draw its events. Models trained on the tables can be scored against
`p_churn_true` to know how close they come to the best achievable AUC.

The story the data tells:

- Accounts belong to a segment (enterprise / mid-market / smb) with
  heavy-tailed (log-normal) seat counts and prices, an industry, a region,
  sometimes a parent account, an account manager and a target-list flag.
  Some are customers when the data starts, some are acquired during it and
  some remain prospects.
- Each account has a hidden monthly *health*: an account level, an AR(1)
  process of its own and an AR(1) process shared by its industry (so churn is
  correlated within an industry). Health drives everything observable:
  weekly usage (active users vs licensed seats), support tickets and their
  priority, NPS answers, late invoices and opportunities.
- SaaS (`kind="saas"`): annual contracts renew at their anniversary, where the
  account churns, downgrades or renews with probabilities that depend on its
  health and on unused seats; a small mid-term churn hazard exists too.
  Expansion happens when an expansion opportunity is won; opportunities open
  more often when the account's demand for seats exceeds its licence (the
  company grows) and close won or lost month by month.
  A subscription row holds `arr = seats x price`; an expansion or downgrade
  ends the row and starts a new one, churn ends it.
- Orders (`kind="orders"`): an industrial B2B customer orders (Poisson) with
  product lines, margins and occasional credits; churn means it stops
  ordering (a monthly hazard); expansion raises its order volume.

The ground truth (`SyntheticPortfolio.ground_truth`, `ground_truth.parquet`)
has one row per account and month start t at which the account is active by
the contract's definition (ARR(t) > 0), with:

- `health` (the hidden state), `alive` (still a customer; for orders an
  account that stopped ordering stays active while its 365-day revenue is
  positive), `arr` (ARR(t) by the contract), `months_to_renewal` (saas),
  `open_expansion_opportunity`;
- `p_churn_monthly`, `p_expand_monthly`: the probabilities drawn from in
  month t's month (churn; expansion = an open opportunity won);
- `p_churn_true`, `p_expand_true`: the probability, given the hidden state at
  t, of the contract labels over the 90 days after t (churn: ARR(t+90d) = 0,
  orders: no positive order in (t, t+90d]; upsell: ARR(t+90d) >= 1.1 ARR(t),
  orders: revenue in (t, t+90d] >= 1.1 x revenue in (t-90d, t]). Month t is
  exact; later months integrate the health forecast month by month. For
  orders, `p_expand_true` approximates the window's revenue by a log-normal
  with matching moments. Both are calibrated against the realised labels
  (see tests/unit/test_synthetic.py);
- `churned_90d`, `expanded_90d`: the realised labels (missing when the 90-day
  window runs past the data).

Everything is vectorised over accounts; the only Python loop runs over months.
The same seed gives identical frames.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import norm

from features.contract import CONTRACT, Tables

PortfolioKind = Literal["saas", "orders"]

SEGMENTS: tuple[str, ...] = ("enterprise", "mid-market", "smb")
SENIORITIES: tuple[str, ...] = ("executive", "senior", "junior")
PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "urgent")
PLANS: tuple[str, ...] = ("starter", "growth", "enterprise")
STAGES: tuple[str, ...] = ("open", "won", "lost")

# The horizon of `p_churn_true` / `p_expand_true` and of the realised labels.
GROUND_TRUTH_HORIZON_DAYS = 90
# Contract events (renewals, expansions, downgrades, churn) fall on these days of
# a month, so that a 90-day window starting on the 1st of month m holds exactly
# the events of months m, m+1 and m+2.
EVENT_DAYS = (3, 28)

GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "account_id",
    "month",
    "health",
    "alive",
    "arr",
    "months_to_renewal",
    "open_expansion_opportunity",
    "p_churn_monthly",
    "p_expand_monthly",
    "p_churn_true",
    "p_expand_true",
    "churned_90d",
    "expanded_90d",
)

_NS_PER_DAY = 86_400 * 10**9
_NEVER = 10**8  # a day number far beyond any simulated date (about the year 275,000)
_EVENT_NONE, _EVENT_CHURN, _EVENT_EXPAND, _EVENT_DOWNGRADE = 0, 1, 2, 3
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(9)
_STREAMS: tuple[str, ...] = (
    "accounts",
    "managers",
    "health",
    "lifecycle",
    "usage",
    "tickets",
    "nps",
    "invoices",
    "opportunities",
    "orders",
)

# --------------------------------------------------------------------------- settings


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmentProfile(_Frozen):
    """How accounts of one segment look and behave."""

    share: float = Field(gt=0, description="Share of all accounts in this segment")
    annual_churn: float = Field(gt=0, lt=1, description="Yearly logo churn at average health")
    annual_expansion: float = Field(
        gt=0, lt=1, description="Yearly share of accounts expanding at average health"
    )
    median_seats: float = Field(gt=0, description="Median licensed seats (volume units for orders)")
    seats_dispersion: float = Field(ge=0, description="Log-normal sigma of the seat count")
    price_per_seat: float = Field(gt=0, description="Median yearly price of a seat")
    employees_per_seat: float = Field(ge=1)
    target_share: float = Field(ge=0, le=1, description="Share of customers on the target list")
    tickets_per_month: float = Field(ge=0)
    orders_per_month: float = Field(gt=0, description="Mean orders per month (orders kind)")
    billing_months: int = Field(ge=1, le=12, description="Months between invoices (saas)")


def _default_segments() -> dict[str, SegmentProfile]:
    return {
        "enterprise": SegmentProfile(
            share=0.08,
            annual_churn=0.07,
            annual_expansion=0.28,
            median_seats=200,
            seats_dispersion=0.8,
            price_per_seat=720,
            employees_per_seat=12,
            target_share=0.95,
            tickets_per_month=2.5,
            orders_per_month=6.0,
            billing_months=3,
        ),
        "mid-market": SegmentProfile(
            share=0.27,
            annual_churn=0.11,
            annual_expansion=0.22,
            median_seats=35,
            seats_dispersion=0.8,
            price_per_seat=540,
            employees_per_seat=8,
            target_share=0.8,
            tickets_per_month=0.9,
            orders_per_month=2.5,
            billing_months=1,
        ),
        "smb": SegmentProfile(
            share=0.65,
            annual_churn=0.18,
            annual_expansion=0.15,
            median_seats=6,
            seats_dispersion=0.7,
            price_per_seat=420,
            employees_per_seat=6,
            target_share=0.45,
            tickets_per_month=0.3,
            orders_per_month=1.0,
            billing_months=1,
        ),
    }


class LifecycleSettings(_Frozen):
    """Who is a customer when, and how accounts relate."""

    customers_at_start: float = Field(
        0.78, ge=0, le=1, description="Share of accounts already customers"
    )
    acquired: float = Field(
        0.15, ge=0, le=1, description="Share of accounts acquired during the data"
    )
    max_customer_age_months: int = Field(72, ge=1)
    children: float = Field(
        0.12, ge=0, lt=0.5, description="Share of accounts with a parent account"
    )
    prospect_target_share: float = Field(0.85, ge=0, le=1)
    prospect_opportunity_share: float = Field(0.4, ge=0, le=1)
    prospect_history_days: int = Field(3 * 365, ge=0)
    initial_open_opportunity: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _shares_fit(self) -> LifecycleSettings:
        if self.customers_at_start + self.acquired > 1:
            raise ValueError("customers_at_start + acquired must be at most 1")
        return self


class HealthSettings(_Frozen):
    """The hidden health: account level + own AR(1) + industry AR(1) (stationary sds)."""

    account_sd: float = Field(0.5, ge=0)
    persistence: float = Field(0.8, ge=0, lt=1)
    idiosyncratic_sd: float = Field(0.7, ge=0)
    industry_persistence: float = Field(0.9, ge=0, lt=1)
    industry_sd: float = Field(0.35, ge=0)
    industry_level_sd: float = Field(0.15, ge=0)
    parent_child_correlation: float = Field(0.6, ge=0, le=1)

    @property
    def population_sd(self) -> float:
        return math.sqrt(
            self.account_sd**2
            + self.idiosyncratic_sd**2
            + self.industry_sd**2
            + self.industry_level_sd**2
        )


class DynamicsSettings(_Frozen):
    """How health, seats and demand turn into churn, downgrades and expansions (logit slopes)."""

    churn_health_slope: float = 1.3
    churn_unused_seats_slope: float = 0.8
    midterm_annual_churn: float = Field(0.015, ge=0, lt=1)
    downgrade_rate: float = Field(
        0.06, ge=0, lt=1, description="At renewal (saas) / per year (orders)"
    )
    downgrade_health_slope: float = 0.6
    downgrade_unused_seats_slope: float = 1.5
    downgrade_factor: tuple[float, float] = (0.6, 0.85)
    opportunity_health_slope: float = 0.6
    opportunity_pressure_slope: float = 1.5
    opportunity_renewal_boost: float = 0.8
    opportunity_win_rate: float = Field(0.3, gt=0, lt=1)
    opportunity_win_health_slope: float = 0.5
    opportunity_win_pressure_slope: float = 0.8
    opportunity_loss_rate: float = Field(0.2, gt=0, lt=1)
    expansion_min_factor: float = Field(1.15, ge=1.1)
    expansion_headroom: tuple[float, float] = (1.05, 1.35)
    growth_mean: float = 0.08
    growth_sd: float = Field(0.15, ge=0)
    initial_utilisation: tuple[float, float] = (0.55, 1.05)


class SignalSettings(_Frozen):
    """How health shows in the observable tables."""

    engagement_intercept: float = 1.2
    engagement_health_slope: float = 1.0
    engagement_weekly_sd: float = 0.3
    events_per_active_user: float = 30.0
    ticket_health_slope: float = 0.5
    ticket_close_days: tuple[float, float, float, float] = (10.0, 6.0, 3.0, 1.0)
    csat_response_rate: float = Field(0.55, ge=0, le=1)
    nps_response_rate: float = Field(0.09, ge=0, le=1)
    nps_mean: float = 7.0
    nps_health_slope: float = 1.8
    nps_noise_sd: float = 1.6
    late_payment_intercept: float = -2.3
    late_payment_health_slope: float = 1.1
    late_payment_mean_days: float = 20.0
    order_health_slope: float = 0.3
    order_amount_dispersion: float = 0.6
    credit_share: float = Field(0.03, ge=0, le=1)
    product_lines: dict[str, float] = Field(
        default_factory=lambda: {
            "components": 0.18,
            "assemblies": 0.25,
            "consumables": 0.4,
            "spare parts": 0.35,
            "services": 0.55,
        },
        description="Product line -> typical gross margin rate",
    )
    product_line_shares: tuple[float, ...] = (0.3, 0.2, 0.25, 0.15, 0.1)


class ManagerSettings(_Frozen):
    """Account managers: capacity per seniority and how well staffed the team is."""

    capacity_accounts: dict[str, float] = Field(
        default_factory=lambda: {"executive": 20, "senior": 80, "junior": 300}
    )
    capacity_hours: tuple[float, float] = (120.0, 160.0)
    staffing: float = Field(0.95, gt=0, description="Total capacity / accounts owned")


class GeneratorSettings(_Frozen):
    """Everything that shapes a synthetic portfolio; the same settings give the same frames."""

    n_accounts: int = Field(1000, gt=0, le=5_000_000)
    months: int = Field(36, ge=3, le=240)
    seed: int = Field(0, ge=0)
    kind: PortfolioKind = "saas"
    start: dt.date = dt.date(2023, 1, 1)
    name: str | None = None
    segments: dict[str, SegmentProfile] = Field(default_factory=_default_segments)
    industries: dict[str, float] = Field(
        default_factory=lambda: {
            "software": 0.16,
            "financial services": 0.12,
            "healthcare": 0.11,
            "manufacturing": 0.14,
            "retail": 0.12,
            "logistics": 0.08,
            "education": 0.07,
            "media": 0.07,
            "energy": 0.06,
            "public sector": 0.07,
        }
    )
    regions: dict[str, float] = Field(
        default_factory=lambda: {"north-america": 0.45, "emea": 0.3, "apac": 0.17, "latam": 0.08}
    )
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    dynamics: DynamicsSettings = Field(default_factory=DynamicsSettings)
    signals: SignalSettings = Field(default_factory=SignalSettings)
    managers: ManagerSettings = Field(default_factory=ManagerSettings)

    @field_validator("start")
    @classmethod
    def _first_of_month(cls, value: dt.date) -> dt.date:
        if value.day != 1:
            raise ValueError(f"start must be the first day of a month, got {value.isoformat()}")
        return value

    @field_validator("segments")
    @classmethod
    def _known_segments(cls, value: dict[str, SegmentProfile]) -> dict[str, SegmentProfile]:
        if set(value) != set(SEGMENTS):
            raise ValueError(f"segments must be exactly {', '.join(SEGMENTS)}")
        return value

    @model_validator(mode="after")
    def _product_lines_match(self) -> GeneratorSettings:
        if len(self.signals.product_lines) != len(self.signals.product_line_shares):
            raise ValueError("signals.product_lines and product_line_shares differ in length")
        return self

    @property
    def portfolio_name(self) -> str:
        return self.name or f"synthetic-{self.kind}-{self.n_accounts}-seed{self.seed}"


@dataclass(frozen=True)
class SyntheticPortfolio:
    """Contract tables and the ground truth they were drawn from."""

    settings: GeneratorSettings
    tables: Tables
    ground_truth: pd.DataFrame

    def row_counts(self) -> dict[str, int]:
        counts = {name: len(frame) for name, frame in self.tables.items()}
        counts["ground_truth"] = len(self.ground_truth)
        return counts


# --------------------------------------------------------------------------- composition


def generate_portfolio(settings: GeneratorSettings) -> SyntheticPortfolio:
    """Simulate a portfolio: contract tables plus the ground-truth probabilities."""
    calendar = _Calendar.build(settings.start, settings.months)
    streams = _random_streams(settings.seed)
    accounts = _draw_accounts(settings, calendar, streams["accounts"])
    managers = _assign_account_managers(settings, accounts, streams["managers"])
    health = _simulate_health(settings, accounts, calendar.months, streams["health"])
    life = _simulate_lifecycle(settings, calendar, accounts, health, streams["lifecycle"])

    tables: Tables = {
        "accounts": _accounts_table(settings, accounts, managers),
        "account_managers": _account_managers_table(managers),
    }
    if settings.kind == "saas":
        tables["subscriptions"] = _subscriptions_table(accounts, life, calendar)
        tables["usage"] = _usage_table(settings, calendar, accounts, health, life, streams["usage"])
        tables["invoices"] = _subscription_invoices_table(
            settings, calendar, accounts, health, life, streams["invoices"]
        )
        arr_by_month = life.arr_at_month_start(accounts)
        realised = _realised_subscription_labels(life, accounts, calendar)
        p_expand_true = life.p_expand_true
    else:
        orders = _draw_orders(settings, calendar, accounts, health, life, streams["orders"])
        tables["orders"] = _orders_frame(orders, accounts)
        tables["invoices"] = _order_invoices_table(
            settings, calendar, accounts, health, orders, streams["invoices"]
        )
        windows = _order_windows(orders, accounts, calendar)
        arr_by_month = windows.revenue_365d
        realised = windows.labels(calendar)
        with np.errstate(invalid="ignore"):  # NaN where the account is not a customer
            p_expand_true = _order_upsell_probability(
                life.p_churn_true,
                life.revenue_mean,
                life.revenue_second_moment,
                windows.revenue_before,
            )
    tables["support_tickets"] = _support_tickets_table(
        settings, calendar, accounts, health, life, streams["tickets"]
    )
    tables["nps"] = _nps_table(settings, calendar, accounts, health, life, streams["nps"])
    tables["opportunities"] = _opportunities_table(
        settings, calendar, accounts, life, streams["opportunities"]
    )
    ordered = {name: tables[name] for name in CONTRACT if name in tables}
    ground_truth = _ground_truth_frame(
        settings, calendar, accounts, health, life, arr_by_month, p_expand_true, realised
    )
    return SyntheticPortfolio(settings, ordered, ground_truth)


def write_portfolio(portfolio: SyntheticPortfolio, out_dir: str | Path) -> Path:
    """Write one Parquet file per table, `ground_truth.parquet`, `settings.json` and `sources.yaml`.

    Returns the path of the `sources.yaml` (its table paths are relative to it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, str]] = {}
    for name, frame in portfolio.tables.items():
        file_name = f"{name}.parquet"
        frame.to_parquet(out / file_name, index=False)
        entries[name] = {"path": file_name}
    portfolio.ground_truth.to_parquet(out / "ground_truth.parquet", index=False)
    (out / "settings.json").write_text(portfolio.settings.model_dump_json(indent=2) + "\n")
    sources = out / "sources.yaml"
    document = {"name": portfolio.settings.portfolio_name, "tables": entries}
    sources.write_text(yaml.safe_dump(document, sort_keys=False))
    return sources


@dataclass(frozen=True)
class GenerationResult:
    """What `generate_and_write` did: where, how many rows, how long."""

    sources_path: Path
    row_counts: dict[str, int]
    seconds: float


def generate_and_write(settings: GeneratorSettings, out_dir: str | Path) -> GenerationResult:
    """Generate a portfolio and write it (what `portfolio generate` runs)."""
    started = time.perf_counter()
    portfolio = generate_portfolio(settings)
    sources = write_portfolio(portfolio, out_dir)
    return GenerationResult(sources, portfolio.row_counts(), time.perf_counter() - started)


# Columns holding ids that a shard's prefix makes unique across shards.
SHARD_ID_COLUMNS: tuple[str, ...] = ("account_id", "parent_account_id", "owner_id")


def generate_and_write_shards(
    settings: GeneratorSettings, shards: int, out_dir: str | Path
) -> GenerationResult:
    """A large portfolio generated and written in `shards` independent pieces.

    Shard k simulates `n_accounts / shards` accounts (the remainder goes to the
    first shards) with its own seed drawn from `settings.seed`, and its ids get
    the prefix of the shard (`ACC-000123` becomes `ACC-k003-000123`, likewise the
    account managers' ids), so only one shard is in memory at a time. Each
    table is written as `<table>/part-<k>.parquet`, read through one glob in
    `sources.yaml`; `ground_truth/part-<k>.parquet` and `settings.json` beside.
    `shards=1` writes what `generate_and_write` writes, in that layout.
    """
    if shards < 1 or shards > settings.n_accounts:
        raise ValueError(f"shards must be between 1 and the number of accounts, got {shards}")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(settings.seed).spawn(shards)
    base, extra = divmod(settings.n_accounts, shards)
    width = len(str(shards - 1))
    counts: dict[str, int] = {}
    names: list[str] = []
    for shard in range(shards):
        piece = settings.model_copy(
            update={
                "n_accounts": base + (shard < extra),
                "seed": int(seeds[shard].generate_state(1)[0]),
            }
        )
        portfolio = generate_portfolio(piece)
        prefix = f"k{shard:0{max(3, width)}d}-"
        frames = {**portfolio.tables, "ground_truth": portfolio.ground_truth}
        for name, frame in frames.items():
            folder = out / name
            folder.mkdir(exist_ok=True)
            _with_shard_ids(frame, prefix).to_parquet(
                folder / f"part-{shard:0{max(3, width)}d}.parquet", index=False
            )
            counts[name] = counts.get(name, 0) + len(frame)
            if name not in names and name != "ground_truth":
                names.append(name)
        del portfolio, frames
    (out / "settings.json").write_text(
        json.dumps({"shards": shards, "settings": settings.model_dump(mode="json")}, indent=2)
        + "\n"
    )
    sources = out / "sources.yaml"
    document = {
        "name": settings.portfolio_name,
        "tables": {name: {"path": f"{name}/part-*.parquet"} for name in names},
    }
    sources.write_text(yaml.safe_dump(document, sort_keys=False))
    return GenerationResult(sources, counts, time.perf_counter() - started)


def _with_shard_ids(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The frame with `prefix` after the `XXX-` head of every id (`ACC-1` -> `ACC-k001-1`)."""
    columns = {}
    for column in SHARD_ID_COLUMNS:
        if column not in frame.columns:
            continue
        ids = pa.array(frame[column], type=pa.large_string())
        prefixed = pc.replace_substring_regex(ids, pattern="^([A-Z]+-)", replacement=rf"\1{prefix}")
        columns[column] = pd.Series(
            prefixed.to_pandas(types_mapper=pd.ArrowDtype), index=frame.index
        ).astype(frame[column].dtype)
    return frame.assign(**columns)


# --------------------------------------------------------------------------- calendar and draws


@dataclass(frozen=True)
class _Calendar:
    """Month starts as day numbers (days since 1970-01-01), with a few months beyond the data."""

    months: int
    start_abs: int  # year * 12 + month - 1 of month 0
    month_start: np.ndarray  # int64, months + 6 entries

    @classmethod
    def build(cls, start: dt.date, months: int) -> _Calendar:
        first = np.datetime64(start, "M")
        starts = (first + np.arange(months + 6)).astype("datetime64[D]").astype(np.int64)
        return cls(months, start.year * 12 + start.month - 1, starts)

    @property
    def days_in_month(self) -> np.ndarray:
        return np.diff(self.month_start)

    @property
    def first_day(self) -> int:
        return int(self.month_start[0])

    @property
    def last_day(self) -> int:
        """The last day covered by the data."""
        return int(self.month_start[self.months]) - 1

    def month_of_day(self, day: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.month_start, day, side="right") - 1

    def window_coverage(self, month: int, horizon_days: int, span: int) -> np.ndarray:
        """Share of each of months month..month+span-1 inside (t, t + horizon] for t = month start."""
        t = self.month_start[month]
        lo = self.month_start[month : month + span]
        hi = self.month_start[month + 1 : month + span + 1]
        overlap = np.minimum(hi, t + horizon_days + 1) - np.maximum(lo, t + 1)
        return np.clip(overlap, 0, None) / (hi - lo)


def _random_streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {
        name: np.random.default_rng(child) for name, child in zip(_STREAMS, children, strict=True)
    }


def _month_start_day(month_abs: np.ndarray) -> np.ndarray:
    """Day number of the first day of absolute month `month_abs` (year * 12 + month - 1)."""
    return (month_abs - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _normalised(weights: dict[str, float] | tuple[float, ...]) -> np.ndarray:
    values = np.asarray(list(weights.values()) if isinstance(weights, dict) else weights, float)
    return values / values.sum()


@dataclass(frozen=True)
class _Accounts:
    """Static account attributes, one entry per account (arrays of length n)."""

    ids: np.ndarray  # str
    names: np.ndarray  # str
    segment: np.ndarray  # int: index into SEGMENTS
    industry: np.ndarray
    region: np.ndarray
    parent: np.ndarray  # index of the parent account or -1
    employees: np.ndarray
    seats0: np.ndarray  # initial seats (volume units)
    price: np.ndarray  # yearly price per seat
    order_frequency: np.ndarray  # orders per month at health 0
    growth: np.ndarray  # yearly log growth of the demand for seats
    demand0: np.ndarray  # demand for seats when the account becomes a customer
    status: np.ndarray  # 0 customer at start, 1 acquired during the data, 2 prospect
    since_abs: np.ndarray  # absolute month of the first contract (huge for prospects)
    anniversary_day: np.ndarray  # day of month of contract events
    since_day: np.ndarray  # first customer day (_NEVER for prospects)
    created_day: np.ndarray
    is_target: np.ndarray  # bool

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def is_customer(self) -> np.ndarray:
        return self.status < 2

    def reference_month(self, calendar: _Calendar) -> np.ndarray:
        """Month index (relative to the data start) at which demand equals demand0."""
        return np.where(self.is_customer, np.clip(self.since_abs - calendar.start_abs, 0, None), 0)

    def demand(self, month: int, calendar: _Calendar) -> np.ndarray:
        years = (month - self.reference_month(calendar)) / 12.0
        return self.demand0 * np.exp(self.growth * years)

    def renewal_due(self, month: int, calendar: _Calendar) -> np.ndarray:
        """Whether month `month` holds a contract anniversary."""
        month_abs = calendar.start_abs + month
        return (self.since_abs < month_abs) & ((month_abs - self.since_abs) % 12 == 0)

    def months_to_renewal(self, month: int, calendar: _Calendar) -> np.ndarray:
        month_abs = calendar.start_abs + month
        return (12 - (month_abs - self.since_abs) % 12) % 12


_NAME_WORDS = [
    "Acme",
    "Apex",
    "Blue",
    "Bright",
    "Cedar",
    "Delta",
    "Echo",
    "Granite",
    "Harbor",
    "Iron",
    "Juniper",
    "Keystone",
    "Lumen",
    "Maple",
    "Nova",
    "Orbit",
    "Pioneer",
    "Quartz",
    "River",
    "Summit",
    "Terra",
    "Union",
    "Vertex",
    "Willow",
    "Zenith",
    "Atlas",
    "Beacon",
    "Cobalt",
    "Falcon",
    "Horizon",
]
_NAME_NOUNS = [
    "Analytics",
    "Bio",
    "Logistics",
    "Systems",
    "Foods",
    "Health",
    "Labs",
    "Energy",
    "Motors",
    "Retail",
    "Capital",
    "Networks",
    "Works",
    "Media",
    "Robotics",
    "Materials",
    "Textiles",
    "Pharma",
    "Software",
    "Holdings",
]
_NAME_FORMS = ["Inc", "LLC", "GmbH", "Ltd", "SA", "BV", "AG", "Corp"]
_FIRST_NAMES = [
    "Alex",
    "Ana",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Yara",
    "Zoe",
]
_LAST_NAMES = [
    "Adler",
    "Berg",
    "Costa",
    "Duarte",
    "Evans",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jansen",
    "Kowalski",
    "Lopez",
    "Martin",
    "Nguyen",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Silva",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Young",
    "Zhang",
]


def _draw_accounts(
    settings: GeneratorSettings, calendar: _Calendar, rng: np.random.Generator
) -> _Accounts:
    n = settings.n_accounts
    profiles = [settings.segments[name] for name in SEGMENTS]
    segment = rng.choice(len(SEGMENTS), size=n, p=_normalised(tuple(p.share for p in profiles)))
    industry = rng.choice(len(settings.industries), size=n, p=_normalised(settings.industries))
    region = rng.choice(len(settings.regions), size=n, p=_normalised(settings.regions))

    def per_segment(field: str) -> np.ndarray:
        return np.array([getattr(p, field) for p in profiles], float)[segment]

    seats0 = np.maximum(
        1.0,
        np.round(
            per_segment("median_seats")
            * np.exp(per_segment("seats_dispersion") * rng.standard_normal(n))
        ),
    )
    employees = np.maximum(
        seats0, np.round(seats0 * per_segment("employees_per_seat") * rng.lognormal(0.0, 0.4, n))
    )
    price = np.round(per_segment("price_per_seat") * rng.lognormal(0.0, 0.15, n))
    order_frequency = per_segment("orders_per_month") * rng.lognormal(0.0, 0.4, n)
    dyn = settings.dynamics
    growth = rng.normal(dyn.growth_mean, dyn.growth_sd, n)
    demand0 = seats0 * rng.uniform(*dyn.initial_utilisation, n)

    life = settings.lifecycle
    draw = rng.random(n)
    status = np.where(
        draw < life.customers_at_start,
        0,
        np.where(draw < life.customers_at_start + life.acquired, 1, 2),
    )
    age_months = rng.integers(1, life.max_customer_age_months + 1, n)
    acquisition_month = rng.integers(0, calendar.months, n)
    since_abs = np.where(
        status == 0,
        calendar.start_abs - age_months,
        np.where(status == 1, calendar.start_abs + acquisition_month, 10**7),
    ).astype(np.int64)
    anniversary_day = rng.integers(EVENT_DAYS[0], EVENT_DAYS[1] + 1, n)
    customer = status < 2
    since_day = np.full(n, _NEVER, np.int64)
    since_day[customer] = _month_start_day(since_abs[customer]) + anniversary_day[customer] - 1
    created_day = np.where(
        customer,
        since_day - rng.integers(14, 400, n),
        rng.integers(calendar.first_day - life.prospect_history_days, calendar.last_day + 1, n),
    )
    target_share = np.where(customer, per_segment("target_share"), life.prospect_target_share)
    is_target = rng.random(n) < target_share

    parent = np.full(n, -1, np.int64)
    n_children = round(life.children * n)
    pool = np.flatnonzero(segment < 2)
    if n_children > 0 and len(pool) >= 2:
        parents = rng.choice(pool, size=max(1, min(len(pool) // 2, n_children // 3)), replace=False)
        others = np.setdiff1d(np.arange(n), parents)
        children = rng.choice(others, size=min(n_children, len(others)), replace=False)
        parent[children] = rng.choice(parents, size=len(children))
        industry[children] = industry[parent[children]]

    width = max(6, len(str(n)))
    ids = np.char.add("ACC-", np.char.zfill(np.arange(1, n + 1).astype(str), width))
    names = np.char.add(
        np.char.add(np.array(_NAME_WORDS)[rng.integers(0, len(_NAME_WORDS), n)], " "),
        np.char.add(
            np.char.add(np.array(_NAME_NOUNS)[rng.integers(0, len(_NAME_NOUNS), n)], " "),
            np.array(_NAME_FORMS)[rng.integers(0, len(_NAME_FORMS), n)],
        ),
    )
    has_parent = parent >= 0
    region_names = np.array(list(settings.regions))
    names[has_parent] = np.char.add(
        np.char.add(names[parent[has_parent]].astype(object).astype(str), " "),
        np.char.upper(region_names[region[has_parent]]),
    )
    return _Accounts(
        ids=ids,
        names=names,
        segment=segment,
        industry=industry,
        region=region,
        parent=parent,
        employees=employees,
        seats0=seats0,
        price=price,
        order_frequency=order_frequency,
        growth=growth,
        demand0=demand0,
        status=status,
        since_abs=since_abs,
        anniversary_day=anniversary_day,
        since_day=since_day,
        created_day=created_day,
        is_target=is_target,
    )


@dataclass(frozen=True)
class _Managers:
    ids: np.ndarray
    names: np.ndarray
    seniority: np.ndarray  # index into SENIORITIES
    capacity_accounts: np.ndarray
    capacity_hours: np.ndarray
    owner_of_account: np.ndarray  # per account: manager index or -1


def _assign_account_managers(
    settings: GeneratorSettings, accounts: _Accounts, rng: np.random.Generator
) -> _Managers:
    """Enterprise accounts go to executives, mid-market to seniors, smb to juniors."""
    owned = accounts.is_customer | accounts.is_target
    seniority_of_account = accounts.segment  # same order: executive, senior, junior
    owner = np.full(accounts.n, -1, np.int64)
    seniority: list[np.ndarray] = []
    capacity: list[np.ndarray] = []
    first = 0
    for level, title in enumerate(SENIORITIES):
        members = np.flatnonzero(owned & (seniority_of_account == level))
        if len(members) == 0:
            continue
        base = settings.managers.capacity_accounts[title]
        count = max(1, math.ceil(len(members) / (base * settings.managers.staffing)))
        owner[members] = first + rng.integers(0, count, len(members))
        seniority.append(np.full(count, level))
        capacity.append(np.round(base * rng.uniform(0.8, 1.2, count)))
        first += count
    levels = np.concatenate(seniority) if seniority else np.zeros(0, int)
    ids = np.char.add("AM-", np.char.zfill(np.arange(1, first + 1).astype(str), 4))
    names = np.char.add(
        np.char.add(np.array(_FIRST_NAMES)[rng.integers(0, len(_FIRST_NAMES), first)], " "),
        np.array(_LAST_NAMES)[rng.integers(0, len(_LAST_NAMES), first)],
    )
    hours = np.round(rng.uniform(*settings.managers.capacity_hours, first))
    return _Managers(
        ids,
        names,
        levels,
        np.concatenate(capacity) if capacity else np.zeros(0),
        hours,
        owner,
    )


# --------------------------------------------------------------------------- health


@dataclass(frozen=True)
class _Health:
    """health[i, m] = level[i] + own[i, m] + shared[industry[i], m]."""

    level: np.ndarray  # (n,)
    own: np.ndarray  # (n, months)
    shared: np.ndarray  # (industries, months)
    values: np.ndarray  # (n, months)

    def forecast(
        self,
        settings: HealthSettings,
        industry: np.ndarray,
        idx: np.ndarray,
        month: int,
        ahead: int,
    ) -> tuple[np.ndarray, float]:
        """Mean and sd of health at month + ahead given the hidden state at month (for accounts idx)."""
        phi, phi_c = settings.persistence, settings.industry_persistence
        mean = (
            self.level[idx]
            + phi**ahead * self.own[idx, month]
            + phi_c**ahead * self.shared[industry[idx], month]
        )
        variance = settings.idiosyncratic_sd**2 * (
            1 - phi ** (2 * ahead)
        ) + settings.industry_sd**2 * (1 - phi_c ** (2 * ahead))
        return mean, math.sqrt(variance)


def _ar1_paths(
    rng: np.random.Generator, rows: int, months: int, persistence: float, sd: float
) -> np.ndarray:
    paths = np.empty((rows, months))
    paths[:, 0] = sd * rng.standard_normal(rows)
    innovation_sd = sd * math.sqrt(1 - persistence**2)
    for month in range(1, months):
        paths[:, month] = persistence * paths[:, month - 1] + innovation_sd * rng.standard_normal(
            rows
        )
    return paths


def _simulate_health(
    settings: GeneratorSettings, accounts: _Accounts, months: int, rng: np.random.Generator
) -> _Health:
    h = settings.health
    n_industries = len(settings.industries)
    level = h.account_sd * rng.standard_normal(accounts.n)
    children = accounts.parent >= 0
    rho = h.parent_child_correlation
    level[children] = (
        rho * level[accounts.parent[children]] + math.sqrt(1 - rho**2) * level[children]
    )
    industry_level = h.industry_level_sd * rng.standard_normal(n_industries)
    level = level + industry_level[accounts.industry]
    own = _ar1_paths(rng, accounts.n, months, h.persistence, h.idiosyncratic_sd)
    shared = _ar1_paths(rng, n_industries, months, h.industry_persistence, h.industry_sd)
    values = level[:, None] + own + shared[accounts.industry]
    return _Health(level, own, shared, values)


# --------------------------------------------------------------------------- lifecycle


def _intercept_for_mean(target: float, slope: float, sd: float) -> float:
    """a such that E[sigmoid(a + slope * h)] = target for h ~ N(0, sd^2)."""

    def gap(a: float) -> float:
        return float(_expected_sigmoid(np.array([a]), slope, np.zeros(1), sd)[0]) - target

    return brentq(gap, -30.0, 30.0)


def _expected_sigmoid(base: np.ndarray, slope: float, mean: np.ndarray, sd: float) -> np.ndarray:
    """E[sigmoid(base + slope * h)] for h ~ N(mean, sd^2) (Gauss-Hermite quadrature)."""
    if sd == 0.0 or slope == 0.0:
        return expit(base + slope * mean)
    z = (base + slope * mean)[:, None] + (slope * sd * math.sqrt(2.0)) * _GH_NODES[None, :]
    return expit(z) @ _GH_WEIGHTS / math.sqrt(math.pi)


def _expected_no_order(rate: np.ndarray, slope: float, mean: np.ndarray, sd: float) -> np.ndarray:
    """E[exp(-rate * exp(slope * h))] for h ~ N(mean, sd^2): the chance of no order."""
    if sd == 0.0 or slope == 0.0:
        return np.exp(-rate * np.exp(slope * mean))
    h = mean[:, None] + (sd * math.sqrt(2.0)) * _GH_NODES[None, :]
    return np.exp(-rate[:, None] * np.exp(slope * h)) @ _GH_WEIGHTS / math.sqrt(math.pi)


@dataclass(frozen=True)
class _Intercepts:
    """Logit intercepts per segment, calibrated to the segment's base rates."""

    renewal_churn: np.ndarray
    midterm_churn: np.ndarray
    monthly_churn: np.ndarray  # orders: the monthly stop hazard
    downgrade: np.ndarray
    opportunity: np.ndarray
    win: float

    @classmethod
    def calibrate(cls, settings: GeneratorSettings) -> _Intercepts:
        dyn = settings.dynamics
        sd = settings.health.population_sd
        profiles = [settings.segments[name] for name in SEGMENTS]
        midterm_monthly = 1 - (1 - dyn.midterm_annual_churn) ** (1 / 12)
        win_mean = dyn.opportunity_win_rate
        eventually_won = win_mean / (win_mean + (1 - win_mean) * dyn.opportunity_loss_rate)
        open_months = 1 / (win_mean + (1 - win_mean) * dyn.opportunity_loss_rate)

        def opportunity_rate(annual: float) -> float:
            # expansions per year = 12 * eventually_won / (1 / rate + open_months + 1)
            yearly = -math.log(1 - annual)
            wait = 12 * eventually_won / yearly - open_months - 1
            return 1 / max(wait, 1.5)

        renewal = [
            max(p.annual_churn - dyn.midterm_annual_churn, 0.005) / (1 - dyn.midterm_annual_churn)
            for p in profiles
        ]
        monthly = [1 - (1 - p.annual_churn) ** (1 / 12) for p in profiles]
        downgrade = (
            dyn.downgrade_rate
            if settings.kind == "saas"
            else 1 - (1 - dyn.downgrade_rate) ** (1 / 12)
        )
        churn_slope = -dyn.churn_health_slope
        return cls(
            renewal_churn=np.array([_intercept_for_mean(r, churn_slope, sd) for r in renewal]),
            midterm_churn=np.full(3, _intercept_for_mean(midterm_monthly, churn_slope, sd)),
            monthly_churn=np.array([_intercept_for_mean(r, churn_slope, sd) for r in monthly]),
            downgrade=np.full(3, _intercept_for_mean(downgrade, -dyn.downgrade_health_slope, sd)),
            opportunity=np.array(
                [
                    _intercept_for_mean(
                        opportunity_rate(p.annual_expansion), dyn.opportunity_health_slope, sd
                    )
                    for p in profiles
                ]
            ),
            win=_intercept_for_mean(win_mean, dyn.opportunity_win_health_slope, sd),
        )


@dataclass(frozen=True)
class _Logits:
    """Logit intercepts (before the health term) of each monthly event, for some accounts."""

    churn: np.ndarray
    downgrade: np.ndarray
    downgrade_possible: np.ndarray
    open: np.ndarray
    win: np.ndarray


def _monthly_logits(
    settings: GeneratorSettings,
    intercepts: _Intercepts,
    segment: np.ndarray,
    seats: np.ndarray,
    demand: np.ndarray,
    renewal: np.ndarray,
    renewal_soon: np.ndarray,
) -> _Logits:
    dyn = settings.dynamics
    pressure = np.log(demand / seats)
    unused = np.clip(-pressure, 0.0, None)
    if settings.kind == "saas":
        churn = np.where(
            renewal,
            intercepts.renewal_churn[segment] + dyn.churn_unused_seats_slope * unused,
            intercepts.midterm_churn[segment],
        )
        downgrade = intercepts.downgrade[segment] + dyn.downgrade_unused_seats_slope * unused
        downgrade_possible = renewal & (seats >= 2)
    else:
        churn = intercepts.monthly_churn[segment]
        downgrade = intercepts.downgrade[segment]
        downgrade_possible = seats >= 2
    opening = (
        intercepts.opportunity[segment]
        + dyn.opportunity_pressure_slope * np.clip(pressure, -1.0, 1.0)
        + dyn.opportunity_renewal_boost * renewal_soon
    )
    win = intercepts.win + dyn.opportunity_win_pressure_slope * np.clip(pressure, 0.0, 1.0)
    return _Logits(churn, downgrade, downgrade_possible, opening, win)


@dataclass
class _OpportunityLog:
    """Expansion opportunities opened and closed during the simulation."""

    opened_account: list[np.ndarray]
    opened_day: list[np.ndarray]
    opened_amount: list[np.ndarray]
    closed_account: list[np.ndarray]
    closed_day: list[np.ndarray]
    closed_won: list[np.ndarray]
    closed_amount: list[np.ndarray]


@dataclass(frozen=True)
class _Lifecycle:
    alive: np.ndarray  # (n, months + 1) customer at the start of each month
    seats: np.ndarray  # (n, months + 1) seats at the start of each month
    event: np.ndarray  # (n, months) int8
    event_day: np.ndarray  # (n, months) int64 day number of the event
    opportunity_open: np.ndarray  # (n, months) open expansion opportunity at the month start
    p_churn_monthly: np.ndarray  # (n, months) NaN where not alive
    p_expand_monthly: np.ndarray
    p_churn_true: np.ndarray
    p_expand_true: np.ndarray
    revenue_mean: np.ndarray  # (n, months) orders: expected revenue in the 90-day window
    revenue_second_moment: np.ndarray
    active_from: np.ndarray  # (n,) first active day
    active_to: np.ndarray  # (n,) first inactive day after churn (_NEVER if none)
    opportunities: _OpportunityLog

    def arr_at_month_start(self, accounts: _Accounts) -> np.ndarray:
        return np.where(self.alive, self.seats * accounts.price[:, None], 0.0)

    def seats_on(self, account: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Seats of `account` on day `day` of month index `month`."""
        event = self.event[account, month]
        changed = (event == _EVENT_EXPAND) | (event == _EVENT_DOWNGRADE)
        after = changed & (day >= self.event_day[account, month])
        return np.where(after, self.seats[account, month + 1], self.seats[account, month])

    def active_spans(self, calendar: _Calendar) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) day numbers of each account's active part of each month, shape (n, months)."""
        starts = calendar.month_start[: calendar.months][None, :]
        ends = calendar.month_start[1 : calendar.months + 1][None, :]
        lo = np.maximum(starts, self.active_from[:, None])
        hi = np.minimum(ends, self.active_to[:, None])
        return lo, np.maximum(hi, lo)


def _simulate_lifecycle(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    rng: np.random.Generator,
) -> _Lifecycle:
    """Month by month: churn, downgrades, expansion opportunities and their outcome."""
    n, months = accounts.n, calendar.months
    saas = settings.kind == "saas"
    dyn = settings.dynamics
    intercepts = _Intercepts.calibrate(settings)
    alive = np.zeros((n, months + 1), bool)
    alive[:, 0] = accounts.status == 0
    seats = np.repeat(accounts.seats0[:, None], months + 1, axis=1)
    event = np.zeros((n, months), np.int8)
    event_day = np.zeros((n, months), np.int64)
    opportunity_open = np.zeros((n, months), bool)
    probabilities = {
        name: np.full((n, months), np.nan)
        for name in (
            "churn_monthly",
            "expand_monthly",
            "churn_true",
            "expand_true",
            "revenue_mean",
            "revenue_second_moment",
        )
    }
    acquisition_month = accounts.since_abs - calendar.start_abs
    active_to = np.full(n, _NEVER, np.int64)

    open_now = (accounts.status == 0) & (
        rng.random(n) < settings.lifecycle.initial_open_opportunity
    )
    log = _OpportunityLog([], [], [], [], [], [], [])
    first = np.flatnonzero(open_now)
    log.opened_account.append(first)
    log.opened_day.append(calendar.first_day - rng.integers(1, 60, len(first)))
    log.opened_amount.append(
        np.round(
            accounts.seats0[first] * accounts.price[first] * rng.uniform(0.15, 0.6, len(first))
        )
    )

    def renewal_soon(month: int) -> np.ndarray:
        return (
            accounts.renewal_due(month + 1, calendar)
            | accounts.renewal_due(month + 2, calendar)
            | accounts.renewal_due(month + 3, calendar)
        )

    for month in range(months):
        h = health.values[:, month]
        at_risk = alive[:, month]
        current = seats[:, month]
        demand = accounts.demand(month, calendar)
        renewal = accounts.renewal_due(month, calendar) if saas else np.zeros(n, bool)
        soon = renewal_soon(month) if saas else np.zeros(n, bool)
        logits = _monthly_logits(
            settings, intercepts, accounts.segment, current, demand, renewal, soon
        )
        p_churn = expit(logits.churn - dyn.churn_health_slope * h)
        p_win = open_now * expit(logits.win + dyn.opportunity_win_health_slope * h)
        p_down = logits.downgrade_possible * expit(
            logits.downgrade - dyn.downgrade_health_slope * h
        )
        p_open = expit(logits.open + dyn.opportunity_health_slope * h)

        draw = rng.random(n)
        churn = at_risk & (draw < p_churn)
        expand = at_risk & ~churn & (draw < p_churn + (1 - p_churn) * p_win)
        downgrade = (
            at_risk
            & ~churn
            & ~expand
            & (draw < p_churn + (1 - p_churn) * (p_win + (1 - p_win) * p_down))
        )
        lost = at_risk & open_now & ~churn & ~expand & (rng.random(n) < dyn.opportunity_loss_rate)
        opened = at_risk & ~churn & ~open_now & (rng.random(n) < p_open)

        random_day = calendar.month_start[month] + rng.integers(EVENT_DAYS[0] - 1, EVENT_DAYS[1], n)
        anniversary = calendar.month_start[month] + accounts.anniversary_day - 1
        if saas:
            day = np.where(renewal, anniversary, random_day)
            churn_day = day
        else:
            day = random_day
            churn_day = np.full(n, calendar.month_start[month])
        new_seats = current.copy()
        grown = np.maximum(
            np.ceil(current * dyn.expansion_min_factor),
            np.ceil(demand * rng.uniform(*dyn.expansion_headroom, n)),
        )
        shrunk = np.maximum(1.0, np.floor(current * rng.uniform(*dyn.downgrade_factor, n)))
        new_seats[expand] = grown[expand]
        new_seats[downgrade] = shrunk[downgrade]
        seats[:, month + 1] = new_seats
        event[churn, month] = _EVENT_CHURN
        event[expand, month] = _EVENT_EXPAND
        event[downgrade, month] = _EVENT_DOWNGRADE
        event_day[:, month] = np.where(churn, churn_day, day)
        active_to[churn] = churn_day[churn]
        opportunity_open[:, month] = open_now

        # The expansion opportunities: won, lost (also when the account churns), opened.
        closing_won = np.flatnonzero(expand)
        closing_lost = np.flatnonzero(open_now & (lost | churn))
        lost_day = np.where(
            churn,
            churn_day,
            calendar.month_start[month] + rng.integers(0, calendar.days_in_month[month], n),
        )
        log.closed_account += [closing_won, closing_lost]
        log.closed_day += [day[closing_won], lost_day[closing_lost]]
        log.closed_won += [np.ones(len(closing_won), bool), np.zeros(len(closing_lost), bool)]
        log.closed_amount += [
            (new_seats[closing_won] - current[closing_won]) * accounts.price[closing_won],
            np.full(len(closing_lost), np.nan),
        ]
        opening = np.flatnonzero(opened)
        log.opened_account.append(opening)
        log.opened_day.append(
            calendar.month_start[month]
            + rng.integers(0, calendar.days_in_month[month], len(opening))
        )
        log.opened_amount.append(
            np.round(
                current[opening] * accounts.price[opening] * rng.uniform(0.15, 0.6, len(opening))
            )
        )

        idx = np.flatnonzero(at_risk)
        probabilities["churn_monthly"][idx, month] = p_churn[idx]
        probabilities["expand_monthly"][idx, month] = ((1 - p_churn) * p_win)[idx]
        outlook = _window_outlook(
            settings,
            calendar,
            accounts,
            health,
            intercepts,
            idx,
            month,
            current[idx],
            open_now[idx],
        )
        probabilities["churn_true"][idx, month] = outlook.churn
        probabilities["expand_true"][idx, month] = outlook.expand
        if outlook.revenue_mean is not None and outlook.revenue_second_moment is not None:
            probabilities["revenue_mean"][idx, month] = outlook.revenue_mean
            probabilities["revenue_second_moment"][idx, month] = outlook.revenue_second_moment

        open_now = (open_now & ~expand & ~lost & ~churn) | opened
        alive[:, month + 1] = (at_risk & ~churn) | (acquisition_month == month)

    return _Lifecycle(
        alive=alive,
        seats=seats,
        event=event,
        event_day=event_day,
        opportunity_open=opportunity_open,
        p_churn_monthly=probabilities["churn_monthly"],
        p_expand_monthly=probabilities["expand_monthly"],
        p_churn_true=probabilities["churn_true"],
        p_expand_true=probabilities["expand_true"],
        revenue_mean=probabilities["revenue_mean"],
        revenue_second_moment=probabilities["revenue_second_moment"],
        active_from=accounts.since_day,
        active_to=active_to,
        opportunities=log,
    )


@dataclass(frozen=True)
class _WindowOutlook:
    """What the hidden state at a month start implies for the next 90 days (accounts idx)."""

    churn: np.ndarray
    expand: np.ndarray
    # Orders only: the first two moments of the revenue in the window.
    revenue_mean: np.ndarray | None = None
    revenue_second_moment: np.ndarray | None = None


def _window_outlook(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    intercepts: _Intercepts,
    idx: np.ndarray,
    month: int,
    seats: np.ndarray,
    open_now: np.ndarray,
) -> _WindowOutlook:
    """P(churn) and P(expansion) within the horizon for accounts idx alive at the month start.

    The window (t, t + 90 days] from the first of month m holds the contract
    events of months m, m+1, m+2. Month m uses the known health; later months
    integrate health over its conditional normal distribution given the hidden
    state at m (Gauss-Hermite), month by month. Expansion follows the
    opportunity chain: an open opportunity is won (expansion), lost or stays
    open; without one an opportunity may open (it can be won from the next
    month on). A churn or downgrade in the window means no expansion label.
    For orders, churn means no positive order in the window: the account stops
    (monthly hazard) or simply orders nothing (Poisson); the revenue moments
    feed `_order_upsell_probability`.
    """
    dyn = settings.dynamics
    saas = settings.kind == "saas"
    segment = accounts.segment[idx]
    horizon_months = 3
    survive = np.ones(len(idx))
    no_opp, with_opp = 1.0 - open_now, open_now.astype(float)
    expanded = np.zeros(len(idx))
    expanded_by_month = [expanded]
    growth_factors: list[np.ndarray] = []
    churn_hazards: list[np.ndarray] = []
    for ahead in range(horizon_months + (0 if saas else 1)):
        mean, sd = health.forecast(settings.health, accounts.industry, idx, month, ahead)
        future = month + ahead
        demand = accounts.demand(future, calendar)[idx]
        if saas:
            renewal = accounts.renewal_due(future, calendar)[idx]
            soon = (
                accounts.renewal_due(future + 1, calendar)
                | accounts.renewal_due(future + 2, calendar)
                | accounts.renewal_due(future + 3, calendar)
            )[idx]
        else:
            renewal = soon = np.zeros(len(idx), bool)
        logits = _monthly_logits(settings, intercepts, segment, seats, demand, renewal, soon)
        churn = _expected_sigmoid(logits.churn, -dyn.churn_health_slope, mean, sd)
        churn_hazards.append(churn)
        growth_factors.append(
            np.maximum(dyn.expansion_min_factor, demand / seats * np.mean(dyn.expansion_headroom))
        )
        if ahead >= horizon_months:
            expanded_by_month.append(expanded)
            continue
        survive = survive * (1 - churn)
        win = _expected_sigmoid(logits.win, dyn.opportunity_win_health_slope, mean, sd)
        down = logits.downgrade_possible * _expected_sigmoid(
            logits.downgrade, -dyn.downgrade_health_slope, mean, sd
        )
        opening = _expected_sigmoid(logits.open, dyn.opportunity_health_slope, mean, sd)
        loss = dyn.opportunity_loss_rate
        stays = (1 - churn) * (1 - win) * (1 - down)
        quiet = (1 - churn) * (1 - down)
        expanded, with_opp, no_opp = (
            expanded * quiet + with_opp * (1 - churn) * win,
            with_opp * stays * (1 - loss) + no_opp * quiet * opening,
            with_opp * stays * loss + no_opp * quiet * (1 - opening),
        )
        expanded_by_month.append(expanded)
    if saas:
        return _WindowOutlook(1 - survive, expanded)

    # Orders: P(no positive order in the window), stopping at a month start or not,
    # and the mean and second moment of the window's revenue.
    coverage = calendar.window_coverage(month, GROUND_TRUTH_HORIZON_DAYS, horizon_months + 1)
    rate = accounts.order_frequency[idx]
    slope = settings.signals.order_health_slope
    amount_second = math.exp(settings.signals.order_amount_dispersion**2)
    yearly_value = seats * accounts.price[idx]
    no_order = np.zeros(len(idx))
    alive_quiet = np.ones(len(idx))  # alive and no order so far
    alive = np.ones(len(idx))
    revenue_mean = np.zeros(len(idx))
    revenue_variance = np.zeros(len(idx))
    for ahead, hazard in enumerate(churn_hazards):
        no_order += alive_quiet * hazard
        mean, sd = health.forecast(settings.health, accounts.industry, idx, month, ahead)
        alive_quiet = (
            alive_quiet * (1 - hazard) * _expected_no_order(rate * coverage[ahead], slope, mean, sd)
        )
        alive = alive * (1 - hazard)
        # level: expansions before the month count fully, during it half
        level = 1 + 0.5 * (expanded_by_month[ahead] + expanded_by_month[ahead + 1]) * (
            growth_factors[ahead] - 1
        )
        orders = rate * coverage[ahead] * np.exp(slope * mean + (slope * sd) ** 2 / 2)
        amount = yearly_value * level / (12.0 * rate)
        revenue_mean += alive * orders * amount
        revenue_variance += alive * orders * amount**2 * amount_second
    return _WindowOutlook(
        churn=no_order + alive_quiet,
        expand=expanded,
        revenue_mean=revenue_mean,
        revenue_second_moment=revenue_variance + revenue_mean**2,
    )


def _order_upsell_probability(
    no_order: np.ndarray,
    revenue_mean: np.ndarray,
    revenue_second_moment: np.ndarray,
    revenue_before: np.ndarray,
    uplift: float = 1.1,
) -> np.ndarray:
    """P(revenue in (t, t+90d] >= uplift x revenue in (t-90d, t] and > 0) for orders.

    The window's revenue is zero with probability `no_order`; otherwise it is
    approximated by a log-normal with the matching first two moments
    (Fenton-Wilkinson), ignoring credits.
    """
    some = np.clip(1 - no_order, 1e-12, None)
    first = np.clip(revenue_mean / some, 1e-12, None)
    second = revenue_second_moment / some
    sigma = np.sqrt(np.log(np.clip(second / first**2, 1 + 1e-9, None)))
    mu = np.log(first) - sigma**2 / 2
    threshold = uplift * revenue_before
    positive = threshold > 0
    z = (np.log(np.where(positive, threshold, 1.0)) - mu) / sigma
    beyond = np.where(positive, norm.sf(z), 1.0)
    return np.clip(1 - no_order, 0.0, 1.0) * beyond


# --------------------------------------------------------------------------- typed columns


def _days_to_datetime(days: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    values = np.asarray(days, np.int64) * _NS_PER_DAY
    if missing is not None:
        values = np.where(missing, np.iinfo(np.int64).min, values)
    return values.view("datetime64[ns]")


def _text(values: np.ndarray, missing: np.ndarray | None = None) -> pd.Series:
    """A pandas `str` column (the dtype the loader gives ids and strings)."""
    array = pa.array(values, pa.large_string(), mask=missing)
    return pd.Series(pd.array(array, dtype="str"))


def _labels(
    codes: np.ndarray, vocabulary: np.ndarray | tuple[str, ...], missing: np.ndarray | None = None
) -> pd.Series:
    """A pandas `str` column of vocabulary[codes] (built in Arrow, fast for millions of rows)."""
    dictionary = pa.array(np.asarray(vocabulary, dtype=object), pa.large_string())
    indices = pa.array(np.asarray(codes, np.int64), mask=missing)
    return pd.Series(pd.array(dictionary.take(indices), dtype="str"))


def _frame(table: str, columns: dict[str, object]) -> pd.DataFrame:
    """A contract frame in contract column order with the loader's dtypes."""
    spec = CONTRACT[table]
    frame = pd.DataFrame({name: columns[name] for name in spec.column_names})
    numbers = [c.name for c in spec.columns if c.type == "number"]
    return frame.astype({name: "float64" for name in numbers})


# --------------------------------------------------------------------------- tables


def _accounts_table(
    settings: GeneratorSettings, accounts: _Accounts, managers: _Managers
) -> pd.DataFrame:
    has_parent = accounts.parent >= 0
    owner = managers.owner_of_account
    return _frame(
        "accounts",
        {
            "account_id": _text(accounts.ids),
            "name": _text(accounts.names),
            "parent_account_id": _text(accounts.ids[np.maximum(accounts.parent, 0)], ~has_parent),
            "segment": _labels(accounts.segment, SEGMENTS),
            "industry": _labels(accounts.industry, tuple(settings.industries)),
            "region": _labels(accounts.region, tuple(settings.regions)),
            "employees": accounts.employees,
            "created_at": _days_to_datetime(accounts.created_day),
            "owner_id": _labels(np.maximum(owner, 0), managers.ids, missing=owner < 0),
            "is_target": pd.array(accounts.is_target, dtype="boolean"),
        },
    )


def _account_managers_table(managers: _Managers) -> pd.DataFrame:
    return _frame(
        "account_managers",
        {
            "owner_id": _text(managers.ids),
            "name": _text(managers.names),
            "seniority": _labels(managers.seniority, SENIORITIES),
            "capacity_accounts": managers.capacity_accounts,
            "capacity_hours": managers.capacity_hours,
        },
    )


def _subscriptions_table(
    accounts: _Accounts, life: _Lifecycle, calendar: _Calendar
) -> pd.DataFrame:
    """One row per contract level: the first contract, then every expansion or downgrade."""
    customers = np.flatnonzero(accounts.is_customer)
    first_start = accounts.since_day[customers]
    first_month = np.clip(accounts.since_abs[customers] - calendar.start_abs, 0, None)
    first_seats = life.seats[customers, first_month]
    change_account, change_month = np.nonzero(
        (life.event == _EVENT_EXPAND) | (life.event == _EVENT_DOWNGRADE)
    )
    account = np.concatenate([customers, change_account])
    start = np.concatenate([first_start, life.event_day[change_account, change_month]])
    seats = np.concatenate([first_seats, life.seats[change_account, change_month + 1]])
    order = np.lexsort((start, account))
    account, start, seats = account[order], start[order], seats[order]
    last_of_account = np.r_[account[1:] != account[:-1], True]
    end = np.r_[start[1:], 0]
    end = np.where(last_of_account, life.active_to[account], end)
    open_ended = end >= _NEVER
    plan = np.digitize(seats, [25, 250])
    return _frame(
        "subscriptions",
        {
            "account_id": _labels(account, accounts.ids),
            "start_date": _days_to_datetime(start),
            "end_date": _days_to_datetime(np.where(open_ended, 0, end), open_ended),
            "arr": seats * accounts.price[account],
            "seats": seats,
            "plan": _labels(plan, PLANS),
        },
    )


def _usage_table(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    life: _Lifecycle,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per account and week while the account is a customer."""
    signals = settings.signals
    week_days = np.arange(calendar.first_day, calendar.last_day + 1, 7)
    n_weeks = len(week_days)
    first_week = np.clip(np.ceil((life.active_from - calendar.first_day) / 7), 0, n_weeks).astype(
        np.int64
    )
    last_week = np.clip(np.ceil((life.active_to - calendar.first_day) / 7), 0, n_weeks).astype(
        np.int64
    )
    counts = np.where(accounts.is_customer, np.maximum(last_week - first_week, 0), 0)
    account = np.repeat(np.arange(accounts.n), counts)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    week = np.repeat(first_week, counts) + np.arange(len(account)) - offsets
    day = week_days[week]
    month = calendar.month_of_day(day)
    seats = life.seats_on(account, month, day)
    demand = accounts.demand0[account] * np.exp(
        accounts.growth[account] * (month - accounts.reference_month(calendar)[account]) / 12.0
    )
    h = health.values[account, month]
    engagement = expit(
        signals.engagement_intercept
        + signals.engagement_health_slope * h
        + signals.engagement_weekly_sd * rng.standard_normal(len(account))
    )
    users_wanting = np.minimum(seats, np.ceil(demand)).astype(np.int64)
    active_users = rng.binomial(users_wanting, engagement).astype(float)
    events = rng.poisson(active_users * signals.events_per_active_user * np.exp(0.25 * h)).astype(
        float
    )
    return _frame(
        "usage",
        {
            "account_id": _labels(account, accounts.ids),
            "date": _days_to_datetime(day),
            "active_users": active_users,
            "events": events,
            "seats_licensed": seats,
        },
    )


def _monthly_events(
    rng: np.random.Generator, calendar: _Calendar, rate: np.ndarray, life: _Lifecycle
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson events at `rate` per full month, uniform over each account's active days.

    Returns (account, month index, day number), sorted by account and day.
    """
    lo, hi = life.active_spans(calendar)
    span = hi - lo
    share = span / calendar.days_in_month[: calendar.months][None, :]
    counts = rng.poisson(rate * share)
    account, month = np.nonzero(counts)
    repeats = counts[account, month]
    account, month = np.repeat(account, repeats), np.repeat(month, repeats)
    day = lo[account, month] + np.floor(rng.random(len(account)) * span[account, month]).astype(
        np.int64
    )
    order = np.lexsort((day, account))
    return account[order], month[order], day[order]


def _support_tickets_table(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    life: _Lifecycle,
    rng: np.random.Generator,
) -> pd.DataFrame:
    signals = settings.signals
    per_month = np.array([settings.segments[s].tickets_per_month for s in SEGMENTS])[
        accounts.segment
    ]
    median = np.array([settings.segments[s].median_seats for s in SEGMENTS])[accounts.segment]
    size = (life.seats[:, : calendar.months] / median[:, None]) ** 0.3
    rate = per_month[:, None] * size * np.exp(-signals.ticket_health_slope * health.values)
    account, month, day = _monthly_events(rng, calendar, rate, life)
    h = health.values[account, month]
    n = len(account)
    severity = -0.7 * h + rng.logistic(size=n)
    priority = np.digitize(severity, [0.0, 1.5, 3.0])
    close_days = np.array(signals.ticket_close_days)[priority] * np.exp(-0.3 * h)
    closed = day + np.ceil(rng.exponential(close_days)).astype(np.int64)
    still_open = closed > calendar.last_day
    answered = ~still_open & (rng.random(n) < signals.csat_response_rate)
    csat = np.clip(np.round(3.9 + 0.6 * h - 0.15 * priority + rng.normal(0, 0.9, n)), 1, 5)
    return _frame(
        "support_tickets",
        {
            "account_id": _labels(account, accounts.ids),
            "created_at": _days_to_datetime(day),
            "closed_at": _days_to_datetime(closed, still_open),
            "priority": _labels(priority, PRIORITIES),
            "csat": np.where(answered, csat, np.nan),
        },
    )


def _nps_table(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    life: _Lifecycle,
    rng: np.random.Generator,
) -> pd.DataFrame:
    signals = settings.signals
    rate = np.full(health.values.shape, signals.nps_response_rate)
    account, month, day = _monthly_events(rng, calendar, rate, life)
    h = health.values[account, month]
    score = (
        np.clip(
            np.round(
                signals.nps_mean
                + signals.nps_health_slope * h
                + rng.normal(0, signals.nps_noise_sd, len(h))
            ),
            0,
            10,
        )
        + 0.0
    )  # no negative zero
    return _frame(
        "nps",
        {
            "account_id": _labels(account, accounts.ids),
            "date": _days_to_datetime(day),
            "score": score,
        },
    )


def _payment_days(
    settings: GeneratorSettings,
    rng: np.random.Generator,
    due: np.ndarray,
    h: np.ndarray,
    last_day: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(paid_at day, unpaid mask): late payers pay days after the due date, others before it."""
    signals = settings.signals
    late = rng.random(len(due)) < expit(
        signals.late_payment_intercept - signals.late_payment_health_slope * h
    )
    delay = np.where(
        late,
        1 + np.floor(rng.exponential(signals.late_payment_mean_days * np.exp(-0.4 * h))),
        -rng.integers(0, 11, len(due)),
    ).astype(np.int64)
    paid = due + delay
    return paid, paid > last_day


def _subscription_invoices_table(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    life: _Lifecycle,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Invoices every `billing_months` from the contract start, due on the anniversary day."""
    billing = np.array([settings.segments[s].billing_months for s in SEGMENTS])[accounts.segment]
    month_abs = calendar.start_abs + np.arange(calendar.months)[None, :]
    billed = (month_abs >= accounts.since_abs[:, None]) & (
        (month_abs - accounts.since_abs[:, None]) % billing[:, None] == 0
    )
    due_all = (
        calendar.month_start[: calendar.months][None, :] + accounts.anniversary_day[:, None] - 1
    )
    billed &= (due_all >= life.active_from[:, None]) & (due_all < life.active_to[:, None])
    account, month = np.nonzero(billed)
    due = due_all[account, month]
    seats = life.seats_on(account, month, due)
    amount = np.round(seats * accounts.price[account] * billing[account] / 12.0, 2)
    paid, unpaid = _payment_days(
        settings, rng, due, health.values[account, month], calendar.last_day
    )
    return _frame(
        "invoices",
        {
            "account_id": _labels(account, accounts.ids),
            "due_date": _days_to_datetime(due),
            "paid_at": _days_to_datetime(paid, unpaid),
            "amount": amount,
        },
    )


@dataclass(frozen=True)
class _OrderRows:
    """Orders and credits as arrays, sorted by account and day."""

    account: np.ndarray
    day: np.ndarray
    amount: np.ndarray
    line: np.ndarray
    margin: np.ndarray
    line_names: tuple[str, ...]


def _draw_orders(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    life: _Lifecycle,
    rng: np.random.Generator,
) -> _OrderRows:
    """Orders (Poisson per active month, plus the first order) and occasional credits.

    Customers at the start also get the orders of the year before it (at their
    health and volume of the first month), so that the 365-day revenue is
    complete from the first month on.
    """
    signals = settings.signals
    rate = accounts.order_frequency[:, None] * np.exp(signals.order_health_slope * health.values)
    account, month, day = _monthly_events(rng, calendar, rate, life)
    first = np.flatnonzero(accounts.status == 1)
    volume = np.concatenate([accounts.seats0[first], life.seats_on(account, month, day)])
    account = np.concatenate([first, account])
    day = np.concatenate([accounts.since_day[first], day])

    existing = np.flatnonzero(accounts.status == 0)
    history_from = np.maximum(accounts.since_day[existing], calendar.first_day - 365)
    history_days = calendar.first_day - history_from
    history_counts = rng.poisson(rate[existing, 0] * history_days * 12 / 365.25)
    history_account = np.repeat(existing, history_counts)
    history_day = np.repeat(history_from, history_counts) + np.floor(
        rng.random(len(history_account)) * np.repeat(history_days, history_counts)
    ).astype(np.int64)
    account = np.concatenate([history_account, account])
    day = np.concatenate([history_day, day])
    volume = np.concatenate([accounts.seats0[history_account], volume])
    sigma = signals.order_amount_dispersion
    mean_amount = volume * accounts.price[account] / (12.0 * accounts.order_frequency[account])
    amount = np.round(mean_amount * rng.lognormal(-(sigma**2) / 2, sigma, len(account)), 2)
    lines = np.array(list(signals.product_lines))
    margin_rates = np.array(list(signals.product_lines.values()))
    line = np.searchsorted(
        np.cumsum(_normalised(signals.product_line_shares))[:-1], rng.random(len(account))
    )
    margin_rate = np.clip(margin_rates[line] + rng.normal(0, 0.04, len(account)), 0.02, 0.9)

    credited = np.flatnonzero(rng.random(len(account)) < signals.credit_share)
    credit_day = day[credited] + rng.integers(5, 46, len(credited))
    keep = credit_day <= calendar.last_day
    credited, credit_day = credited[keep], credit_day[keep]
    credit_amount = -np.round(amount[credited] * rng.uniform(0.1, 1.0, len(credited)), 2)

    all_account = np.concatenate([account, account[credited]])
    all_day = np.concatenate([day, credit_day])
    all_amount = np.concatenate([amount, credit_amount])
    all_line = np.concatenate([line, line[credited]])
    all_margin = np.round(all_amount * np.concatenate([margin_rate, margin_rate[credited]]), 2)
    order = np.lexsort((all_day, all_account))
    return _OrderRows(
        account=all_account[order],
        day=all_day[order],
        amount=all_amount[order],
        line=all_line[order],
        margin=all_margin[order],
        line_names=tuple(lines),
    )


def _orders_frame(rows: _OrderRows, accounts: _Accounts) -> pd.DataFrame:
    return _frame(
        "orders",
        {
            "account_id": _labels(rows.account, accounts.ids),
            "date": _days_to_datetime(rows.day),
            "amount": rows.amount,
            "product_line": _labels(rows.line, rows.line_names),
            "margin": rows.margin,
        },
    )


def _order_invoices_table(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    orders: _OrderRows,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One invoice per positive order, due 30 days after it."""
    positive = orders.amount > 0
    account, day = orders.account[positive], orders.day[positive]
    due = day + 30
    month = np.clip(calendar.month_of_day(day), 0, None)  # orders before the data: first month
    paid, unpaid = _payment_days(
        settings, rng, due, health.values[account, month], calendar.last_day
    )
    return _frame(
        "invoices",
        {
            "account_id": _labels(account, accounts.ids),
            "due_date": _days_to_datetime(due),
            "paid_at": _days_to_datetime(paid, unpaid),
            "amount": orders.amount[positive],
        },
    )


def _opportunities_table(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    life: _Lifecycle,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """New business, expansion and (saas) renewal opportunities."""
    parts = [
        _new_business_opportunities(settings, calendar, accounts, rng),
        _expansion_opportunities(life.opportunities, calendar),
    ]
    if settings.kind == "saas":
        parts.append(_renewal_opportunities(calendar, accounts, life))
    account, created, closed, stage, amount, kind = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    still_open = closed > calendar.last_day
    stage = np.where(still_open, 0, stage)
    order = np.lexsort((created, account))
    return _frame(
        "opportunities",
        {
            "account_id": _labels(account[order], accounts.ids),
            "created_at": _days_to_datetime(created[order]),
            "closed_at": _days_to_datetime(
                np.where(still_open, 0, closed)[order], still_open[order]
            ),
            "stage": _labels(stage[order], STAGES),
            "amount": amount[order],
            "kind": _labels(kind[order], ("new", "expansion", "renewal")),
        },
    )


_OpportunityParts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _new_business_opportunities(
    settings: GeneratorSettings, calendar: _Calendar, accounts: _Accounts, rng: np.random.Generator
) -> _OpportunityParts:
    acquired = np.flatnonzero(accounts.status == 1)
    prospects = np.flatnonzero(accounts.status == 2)
    pursued = prospects[rng.random(len(prospects)) < settings.lifecycle.prospect_opportunity_share]
    won_created = accounts.since_day[acquired] - rng.integers(20, 151, len(acquired))
    lost_created = rng.integers(calendar.first_day, calendar.last_day + 1, len(pursued))
    lost_closed = lost_created + rng.integers(20, 151, len(pursued))
    account = np.concatenate([acquired, pursued])
    expected_arr = accounts.seats0 * accounts.price
    return (
        account,
        np.concatenate([won_created, lost_created]),
        np.concatenate([accounts.since_day[acquired], lost_closed]),
        np.concatenate([np.ones(len(acquired), int), np.full(len(pursued), 2)]),
        expected_arr[account],
        np.zeros(len(account), int),
    )


def _expansion_opportunities(log: _OpportunityLog, calendar: _Calendar) -> _OpportunityParts:
    """Match each account's k-th opened opportunity with its k-th close."""
    opened_account = np.concatenate(log.opened_account)
    opened_day = np.concatenate(log.opened_day)
    opened_amount = np.concatenate(log.opened_amount)
    order = np.lexsort((opened_day, opened_account))
    opened_account, opened_day, opened_amount = (
        opened_account[order],
        opened_day[order],
        opened_amount[order],
    )
    closed_account = np.concatenate(log.closed_account)
    closed_day = np.concatenate(log.closed_day)
    closed_won = np.concatenate(log.closed_won)
    closed_amount = np.concatenate(log.closed_amount)
    order = np.lexsort((closed_day, closed_account))
    closed_account, closed_day = closed_account[order], closed_day[order]
    closed_won, closed_amount = closed_won[order], closed_amount[order]

    rank = np.arange(len(closed_account)) - np.searchsorted(closed_account, closed_account)
    match = np.searchsorted(opened_account, closed_account) + rank
    closed = np.full(len(opened_account), _NEVER, np.int64)
    stage = np.zeros(len(opened_account), int)
    amount = opened_amount.astype(float)
    closed[match] = np.maximum(closed_day, opened_day[match])
    stage[match] = np.where(closed_won, 1, 2)
    amount[match] = np.where(closed_won, closed_amount, amount[match])
    return (
        opened_account,
        opened_day,
        closed,
        stage,
        amount,
        np.ones(len(opened_account), int),
    )


def _renewal_opportunities(
    calendar: _Calendar, accounts: _Accounts, life: _Lifecycle
) -> _OpportunityParts:
    """A renewal opportunity opens 90 days before each anniversary and closes on it."""
    months = calendar.months
    due = np.stack([accounts.renewal_due(m, calendar) for m in range(months + 3)], axis=1)
    alive = np.concatenate([life.alive, np.repeat(life.alive[:, -1:], 2, axis=1)], axis=1)
    account, month = np.nonzero(due & alive)
    anniversary = calendar.month_start[month] + accounts.anniversary_day[account] - 1
    created = anniversary - 90
    keep = created <= calendar.last_day
    account, month, anniversary, created = (
        account[keep],
        month[keep],
        anniversary[keep],
        created[keep],
    )
    in_data = month < months
    churned = np.zeros(len(account), bool)
    churned[in_data] = life.event[account[in_data], month[in_data]] == _EVENT_CHURN
    seats = life.seats[account, np.minimum(month, months)]
    return (
        account,
        created,
        anniversary,
        np.where(churned, 2, 1),
        seats * accounts.price[account],
        np.full(len(account), 2),
    )


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class _RealisedLabels:
    churned: np.ndarray  # (n, months) bool
    expanded: np.ndarray
    observed: np.ndarray  # (months,) whether the 90-day window lies inside the data


def _window_observed(calendar: _Calendar) -> np.ndarray:
    ends = calendar.month_start[: calendar.months] + GROUND_TRUTH_HORIZON_DAYS
    return ends <= calendar.last_day


def _realised_subscription_labels(
    life: _Lifecycle, accounts: _Accounts, calendar: _Calendar
) -> _RealisedLabels:
    """ARR(t + 90 days) equals ARR at the start of month m + 3 (events fall on days 3-28)."""
    months = calendar.months
    arr = life.arr_at_month_start(accounts)
    later = np.concatenate([arr[:, 3:], np.zeros((accounts.n, 3))], axis=1)[:, :months]
    now = arr[:, :months]
    return _RealisedLabels(
        churned=later <= 0,
        expanded=(later > 0) & (later >= 1.1 * now),
        observed=_window_observed(calendar),
    )


@dataclass(frozen=True)
class _OrderWindows:
    revenue_365d: np.ndarray  # (n, months) revenue in (t - 365 days, t]
    revenue_before: np.ndarray  # (t - 90 days, t]
    revenue_after: np.ndarray  # (t, t + 90 days]
    positive_after: np.ndarray  # count of positive orders in (t, t + 90 days]

    def labels(self, calendar: _Calendar) -> _RealisedLabels:
        return _RealisedLabels(
            churned=self.positive_after == 0,
            expanded=(self.revenue_after > 0) & (self.revenue_after >= 1.1 * self.revenue_before),
            observed=_window_observed(calendar),
        )


def _order_windows(orders: _OrderRows, accounts: _Accounts, calendar: _Calendar) -> _OrderWindows:
    account, day, amount = orders.account, orders.day, orders.amount
    as_of = calendar.month_start[: calendar.months]
    n, months = accounts.n, calendar.months

    def window_sum(weights: np.ndarray, earliest: int, latest: int) -> np.ndarray:
        """Sum of weights of rows with as_of in [day + earliest, day + latest], per account and month."""
        lo = np.searchsorted(as_of, day + earliest, side="left")
        hi = np.searchsorted(as_of, day + latest, side="right")
        flat = np.bincount(account * (months + 1) + lo, weights, minlength=n * (months + 1))
        flat -= np.bincount(account * (months + 1) + hi, weights, minlength=n * (months + 1))
        sums = np.cumsum(flat.reshape(n, months + 1), axis=1)[:, :months]
        return np.round(sums, 6)  # amounts are in cents: no floating-point residue

    horizon = GROUND_TRUTH_HORIZON_DAYS
    return _OrderWindows(
        revenue_365d=window_sum(amount, 0, 364),
        revenue_before=window_sum(amount, 0, horizon - 1),
        revenue_after=window_sum(amount, -horizon, -1),
        positive_after=np.rint(window_sum((amount > 0).astype(float), -horizon, -1)),
    )


def _ground_truth_frame(
    settings: GeneratorSettings,
    calendar: _Calendar,
    accounts: _Accounts,
    health: _Health,
    life: _Lifecycle,
    arr: np.ndarray,
    p_expand_true: np.ndarray,
    realised: _RealisedLabels,
) -> pd.DataFrame:
    """One row per account and month start at which the account is active (ARR > 0)."""
    months = calendar.months
    alive = life.alive[:, :months]
    arr = arr[:, :months]
    rows = alive if settings.kind == "saas" else arr > 0
    account, month = np.nonzero(rows)
    is_alive = alive[account, month]

    def probability(values: np.ndarray, when_stopped: float) -> np.ndarray:
        return np.where(is_alive, values[account, month], when_stopped)

    if settings.kind == "saas":
        to_renewal = np.stack(
            [accounts.months_to_renewal(m, calendar) for m in range(months)], axis=1
        )
        months_to_renewal = to_renewal[account, month].astype(float)
    else:
        months_to_renewal = np.full(len(account), np.nan)
    observed = realised.observed[month]
    return pd.DataFrame(
        {
            "account_id": _labels(account, accounts.ids),
            "month": _days_to_datetime(calendar.month_start[month]),
            "health": health.values[account, month],
            "alive": pd.array(is_alive, dtype="boolean"),
            "arr": arr[account, month].astype(float),
            "months_to_renewal": months_to_renewal,
            "open_expansion_opportunity": pd.array(
                life.opportunity_open[account, month] & is_alive, dtype="boolean"
            ),
            "p_churn_monthly": probability(life.p_churn_monthly, 1.0),
            "p_expand_monthly": probability(life.p_expand_monthly, 0.0),
            "p_churn_true": probability(life.p_churn_true, 1.0),
            "p_expand_true": probability(p_expand_true, 0.0),
            "churned_90d": _observed_flags(realised.churned[account, month], observed),
            "expanded_90d": _observed_flags(realised.expanded[account, month], observed),
        }
    )


def _observed_flags(values: np.ndarray, observed: np.ndarray) -> pd.arrays.BooleanArray:
    return pd.arrays.BooleanArray(values.astype(bool), ~observed)
