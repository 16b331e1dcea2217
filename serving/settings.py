"""Typed settings for portfolio analytics, prioritisation and allocation.

Every threshold, weight and size used by `serving.analytics`, `serving.segmentation`,
`serving.alerts`, `serving.prioritisation`, `serving.allocation` and `serving.movers`
lives here with its default. Nothing in those modules is a scattered literal.

Comparison conventions (documented once, tested at the boundaries):

- "above" alert rules trigger when the observed value is strictly greater than the
  threshold (`observed > threshold`), "below" rules when it is strictly smaller
  (`observed < threshold`), "rose by" rules when the rise is at least the threshold
  (`rise >= threshold`);
- segmentation and tier rules that say "at least" include the boundary (`>=`);
- observed values are rounded to `AlertSettings.comparison_decimals` decimals before
  they are compared, so a value that is exactly the threshold by hand (0.4 = 40 / 100)
  is not pushed over or under it by floating-point noise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Seniority = Literal["junior", "senior", "executive"]
Tier = Literal["strategic", "high-touch", "tech-touch"]

SENIORITIES: tuple[str, ...] = ("junior", "senior", "executive")
TIERS: tuple[str, ...] = ("strategic", "high-touch", "tech-touch")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSettings(_Settings):
    """Portfolio metrics: horizon, the ARR-lost band, concentration and pipeline velocity."""

    horizon_days: int = Field(90, gt=0, description="Horizon of p_churn / p_upsell in days")
    band_draws: int = Field(
        10_000, gt=0, description="Monte Carlo draws for the distribution of ARR lost"
    )
    band_max_cells: int = Field(
        200_000_000,
        gt=0,
        description="Cap on draws x accounts: large portfolios use fewer draws "
        "(never fewer than band_min_draws)",
    )
    band_min_draws: int = Field(2_000, gt=0, description="Draws used however large the portfolio")
    group_band_draws: int = Field(
        2_000,
        gt=0,
        description="Draws (the first of the same simulation) for the band of each "
        "segment / industry / region / owner",
    )
    band_seed: int = Field(20_240_601, description="Seed of the Monte Carlo draws (deterministic)")
    band_quantiles: tuple[float, float, float] = Field(
        (0.10, 0.50, 0.90), description="Quantiles reported as p10 / p50 / p90"
    )
    concentration_top_n: int = Field(10, gt=0, description="Accounts in the top-N share")
    velocity_window_days: int = Field(
        365, gt=0, description="Look-back window for pipeline velocity (days before as_of)"
    )
    velocity_period_days: int = Field(
        30, gt=0, description="Length of one period in 'opportunities per period'"
    )
    velocity_kinds: tuple[str, ...] = Field(
        ("new", "expansion"),
        description="Opportunity kinds counted as pipeline (renewals are not new pipeline); "
        "opportunities without a kind are counted",
    )
    unknown_label: str = Field(
        "unknown", description="Group name for a missing segment/industry/region/owner"
    )


class ValueSettings(_Settings):
    """Expected expansion amount and the expected value at stake."""

    expansion_fraction_of_arr: float = Field(
        0.10,
        ge=0,
        description="Expansion amount when an account expands, as a fraction of its ARR "
        "(the upsell label's minimum growth, a conservative default)",
    )
    saveable_share: float = Field(
        0.30,
        ge=0,
        le=1,
        description="Share of the expected ARR at risk that attention can save",
    )


class SegmentationSettings(_Settings):
    """The value x risk x potential grid and the ideal-customer-profile fit."""

    high_value_quantile: float = Field(
        0.80,
        ge=0,
        le=1,
        description="An account is high value when its ARR is at least this quantile of "
        "the portfolio's ARR (unless high_value_arr is set)",
    )
    high_value_arr: float | None = Field(
        None, ge=0, description="Absolute ARR from which an account is high value"
    )
    high_risk_p_churn: float = Field(0.25, ge=0, le=1, description="High risk when p_churn >= this")
    high_potential_p_upsell: float = Field(
        0.30, ge=0, le=1, description="High potential when p_upsell >= this"
    )
    icp_attributes: tuple[str, ...] = Field(
        ("segment", "industry", "region", "employee_band"),
        description="Firmographic attributes of the ideal customer profile",
    )
    icp_best_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of accounts taken as 'best' (highest expected retained ARR, "
        "arr x (1 - p_churn))",
    )
    icp_smoothing: float = Field(
        5.0,
        ge=0,
        description="Pseudo-accounts pulling a category's best-rate towards the base rate",
    )
    employee_bands: tuple[float, ...] = Field(
        (50, 250, 1000, 5000),
        description="Upper bounds (exclusive) of employee bands; the last band is open",
    )


class CampaignRule(_Settings):
    """One campaign's eligibility: every condition given must hold.

    `at_least` bounds are inclusive (value >= bound), `below` bounds exclusive (value < bound).
    Columns are those of the enriched scores (p_churn, p_upsell, arr, icp_fit, priority...).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    at_least: dict[str, float] = Field(default_factory=dict)
    below: dict[str, float] = Field(default_factory=dict)
    tiers: tuple[str, ...] | None = None
    value_segments: tuple[str, ...] | None = None


def _default_campaigns() -> tuple[CampaignRule, ...]:
    return (
        CampaignRule(
            name="abm",
            description="Account-based marketing list: good-fit accounts with expansion potential",
            at_least={"icp_fit": 0.7, "p_upsell": 0.30},
            below={"p_churn": 0.25},
        ),
        CampaignRule(
            name="nurturing",
            description="Nurturing: good-fit tech-touch accounts with some expansion potential, "
            "not yet ready to expand",
            at_least={"icp_fit": 0.7, "p_upsell": 0.05},
            below={"p_upsell": 0.30, "p_churn": 0.25},
            tiers=("tech-touch",),
        ),
        CampaignRule(
            name="adoption_programme",
            description="Adoption programme: accounts at risk that are not covered one-to-one",
            at_least={"p_churn": 0.25},
            tiers=("high-touch", "tech-touch"),
        ),
    )


class PrioritySettings(_Settings):
    """Priority = expected value at stake x fit factor x timing factor."""

    fit_weight: float = Field(
        0.20,
        ge=0,
        le=1,
        description="fit factor = (1 - fit_weight) + fit_weight x icp_fit",
    )
    renewal_window_days: int = Field(
        90, gt=0, description="Renewals within this many days raise the priority"
    )
    renewal_weight: float = Field(
        0.50,
        ge=0,
        description="timing factor = 1 + renewal_weight x (1 - days_to_renewal / window) "
        "inside the window, 1 outside it or when unknown",
    )


class TierSettings(_Settings):
    """Coverage tiers by priority rank, and the promotion rule."""

    strategic_share: float = Field(
        0.05, ge=0, le=1, description="Top share of accounts by priority that are strategic"
    )
    high_touch_share: float = Field(
        0.20, ge=0, le=1, description="Next share of accounts by priority that are high-touch"
    )
    promotion_expected_expansion: float = Field(
        25_000.0,
        ge=0,
        description="A tech-touch account with expected_expansion >= this is promoted to high-touch",
    )
    promotion_p_upsell: float = Field(
        0.70,
        ge=0,
        le=1,
        description="A tech-touch account with p_upsell >= this is promoted to high-touch",
    )

    @model_validator(mode="after")
    def _shares_fit(self) -> TierSettings:
        if self.strategic_share + self.high_touch_share > 1:
            raise ValueError("strategic_share + high_touch_share must be at most 1")
        return self


def _default_match_factors() -> dict[str, dict[str, float]]:
    return {
        "strategic": {"junior": 0.0, "senior": 1.0, "executive": 1.2},
        "high-touch": {"junior": 0.8, "senior": 1.0, "executive": 1.0},
        "tech-touch": {"junior": 1.0, "senior": 1.0, "executive": 1.0},
    }


class AllocationSettings(_Settings):
    """Account-manager allocation: value model, workload and continuity."""

    match_factors: dict[str, dict[str, float]] = Field(
        default_factory=_default_match_factors,
        description="tier -> seniority -> share of an account's priority the person realises; "
        "0 forbids the pair (junior people never own strategic accounts by default)",
    )
    hours_per_account: dict[str, float] = Field(
        default_factory=lambda: {"strategic": 8.0, "high-touch": 3.0, "tech-touch": 0.5},
        description="Monthly hours an account of each tier takes (for capacity_hours)",
    )
    continuity_share: float = Field(
        0.10,
        ge=0,
        description="Keep the current owner unless moving the account gains more than this "
        "share of its priority",
    )
    continuity_min_gain: float = Field(
        0.0, ge=0, description="...and more than this absolute value"
    )
    exact_max_accounts: int = Field(
        500,
        ge=0,
        description="Up to this many accounts the MILP solves the integer counts exactly "
        "(within mip_rel_gap); above it, the priced LP with rounding (deterministic, gap "
        "reported)",
    )
    pricing_rounds: int = Field(
        20,
        ge=0,
        description="Above exact_max_accounts: rounds of bringing into the solver the staying "
        "accounts the LP's capacity prices show could do better (until none is left)",
    )
    neighbourhood_rounds: int = Field(
        1,
        ge=0,
        description="Above exact_max_accounts: rounds of exact re-optimisation around the "
        "rounded LP solution (each keeps its result only when it is better)",
    )
    time_limit_seconds: float = Field(60.0, gt=0, description="Time limit of the exact MILP")
    neighbourhood_mip_rel_gap: float = Field(
        1e-3,
        ge=0,
        description="Relative gap of each neighbourhood MILP (of the neighbourhood's value, a "
        "small part of the portfolio's)",
    )
    neighbourhood_time_limit_seconds: float = Field(
        20.0,
        gt=0,
        description="Time limit of each neighbourhood MILP (on expiry its best solution is "
        "used when it improves, else the rounded one)",
    )
    mip_rel_gap: float = Field(1e-4, ge=0, description="Relative optimality gap of the solver")
    moves_reported: int = Field(25, ge=0, description="Largest moves listed in the summary")

    @model_validator(mode="after")
    def _complete_tables(self) -> AllocationSettings:
        for tier in TIERS:
            if tier not in self.match_factors:
                raise ValueError(f"match_factors has no row for tier {tier!r}")
            missing = [s for s in SENIORITIES if s not in self.match_factors[tier]]
            if missing:
                raise ValueError(f"match_factors[{tier!r}] has no factor for {missing}")
            if any(v < 0 for v in self.match_factors[tier].values()):
                raise ValueError(f"match_factors[{tier!r}] has a negative factor")
            if tier not in self.hours_per_account:
                raise ValueError(f"hours_per_account has no entry for tier {tier!r}")
            if self.hours_per_account[tier] < 0:
                raise ValueError(f"hours_per_account[{tier!r}] is negative")
        return self


def _default_actions() -> dict[str, str]:
    return {
        "concentration_top10": "Diversify sectors and grow the mid-market to reduce the "
        "dependence on the largest accounts",
        "sector_dependency": "Diversify sectors: point new-business campaigns at "
        "under-represented industries",
        "churn_share": "Launch an adoption programme and reinforce CSM coverage on the "
        "accounts at risk",
        "coverage": "Run nurturing and acquisition campaigns on the uncovered target accounts",
        "account_risk_rise": "Open a health plan with the account owner",
        "sector_risk_rise": "Review the sector: health plans for its accounts at risk and a "
        "sector-specific adoption campaign",
    }


ALERT_RULES: tuple[str, ...] = tuple(_default_actions())


class AlertSettings(_Settings):
    """Alert thresholds (see the module docstring for > / < / >= conventions)."""

    actions: dict[str, str] = Field(
        default_factory=_default_actions, description="rule -> suggested action"
    )

    concentration_top10: float = Field(
        0.40, ge=0, le=1, description="Alert when the top-10 share (parents rolled up) > this"
    )
    sector_dependency: float = Field(
        0.40, ge=0, le=1, description="Alert when the largest industry's ARR share > this"
    )
    churn_share: float = Field(
        0.10,
        ge=0,
        le=1,
        description="Alert when weighted churn risk / ARR > this",
    )
    coverage_target: float = Field(
        0.60, ge=0, le=1, description="Alert for a segment whose coverage < this"
    )
    account_risk_rise: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Alert for accounts whose p_churn rose by >= this since the last run",
    )
    sector_risk_rise: float = Field(
        0.03,
        ge=0,
        le=1,
        description="Alert for an industry whose weighted churn share rose by >= this",
    )
    critical_ratio: float = Field(
        1.5,
        ge=1,
        description="Severity is critical when observed >= ratio x threshold "
        "(or <= threshold / ratio for 'below' rules), warning otherwise",
    )
    max_accounts: int = Field(25, gt=0, description="Accounts listed per alert at most")
    comparison_decimals: int = Field(9, ge=0, le=15)

    @model_validator(mode="after")
    def _every_rule_has_an_action(self) -> AlertSettings:
        missing = [rule for rule in ALERT_RULES if rule not in self.actions]
        if missing:
            raise ValueError(f"alerts.actions has no suggested action for {missing}")
        return self


class MoverSettings(_Settings):
    """Movers since the previous run."""

    count: int = Field(20, ge=0, description="Accounts listed per score (churn, upsell)")
    min_change: float = Field(
        0.0, ge=0, le=1, description="Only changes with |change| >= this are movers"
    )
    features_per_account: int = Field(5, ge=0, description="Features listed per mover")


class PortfolioSettings(_Settings):
    """All the parameters of the portfolio layer, with defaults."""

    metrics: MetricSettings = Field(default_factory=MetricSettings)
    value: ValueSettings = Field(default_factory=ValueSettings)
    segmentation: SegmentationSettings = Field(default_factory=SegmentationSettings)
    campaigns: tuple[CampaignRule, ...] = Field(default_factory=_default_campaigns)
    priority: PrioritySettings = Field(default_factory=PrioritySettings)
    tiers: TierSettings = Field(default_factory=TierSettings)
    allocation: AllocationSettings = Field(default_factory=AllocationSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    movers: MoverSettings = Field(default_factory=MoverSettings)

    @model_validator(mode="after")
    def _unique_campaigns(self) -> PortfolioSettings:
        names = [rule.name for rule in self.campaigns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"campaign names must be unique; repeated: {duplicated}")
        return self
