"""Request and response models of the scoring service (`POST /score`, `POST /portfolio`).

The request models are what the service validates every body against
(`extra="forbid"`, ranges, no NaN or infinity). The response models describe
what the handlers return; they feed the OpenAPI document at `/docs.json`.
Limits that depend on the deployment (accounts per request, body size) are
checked by the service with its `ServiceSettings`, so one set of models serves
every configuration; `HARD_MAX_ACCOUNTS` is only an absolute ceiling.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, StringConstraints

HARD_MAX_ACCOUNTS = 100_000
MAX_FEATURES_PER_ACCOUNT = 1_000

AccountId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$"),
]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
FilterValue = Annotated[str, StringConstraints(min_length=1, max_length=256)]


# A feature value in a what-if record: a finite number, a category (string), a flag
# or null (unknown). Which one a feature needs is checked against the champion models.
# (A plain union validates in Rust; serving.api_guard folds its per-branch errors into one.)
FeatureValue = FiniteNumber | StrictBool | StrictStr | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AccountRequest(_Strict):
    """One account to score: by id (features from the snapshot) or with a full record."""

    account_id: AccountId = Field(
        description="The account id. Alone, its features are looked up in the latest snapshot."
    )
    features: dict[FeatureName, FeatureValue] | None = Field(
        None,
        max_length=MAX_FEATURES_PER_ACCOUNT,
        description=(
            "A what-if feature record. For an account in the snapshot, the given features "
            "replace the snapshot's values; for any other id, every model feature must be "
            "given (null for unknown)."
        ),
    )


class ScoreRequest(_Strict):
    """Body of `POST /score`."""

    accounts: list[AccountRequest] = Field(
        min_length=1,
        max_length=HARD_MAX_ACCOUNTS,
        description="Accounts to score (at most the service's max accounts per request, default 1000).",
    )


class PortfolioRequest(_Strict):
    """Body of `POST /portfolio`: optional filters (all given filters must match)."""

    segment: FilterValue | None = Field(None, description="Only accounts of this segment")
    owner_id: FilterValue | None = Field(None, description="Only accounts of this owner")
    industry: FilterValue | None = Field(None, description="Only accounts of this industry")
    region: FilterValue | None = Field(None, description="Only accounts of this region")

    def filters(self) -> dict[str, str]:
        """The filters that were given, by column name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class Reason(BaseModel):
    """One factor behind a score (as in the `reasons` column of scores.parquet)."""

    model: Literal["churn", "upsell"] = Field(description="The score the factor explains")
    rank: int = Field(ge=1, description="1 = the largest contribution of that model")
    feature: str
    value: str | None = Field(
        description="The feature's value as the model read it (text); null when missing"
    )
    contribution: float = Field(
        description="Signed contribution to the model's log-odds; positive raises the score"
    )
    text: str = Field(description="The factor in words, from the feature metadata")


class AccountScore(BaseModel):
    """The scores of one account: the columns of the nightly `scores.parquet`."""

    account_id: str
    as_of: str | None = Field(description="ISO date of the features that were scored")
    p_churn: float = Field(ge=0, le=1)
    p_upsell: float = Field(ge=0, le=1)
    arr: float = Field(ge=0)
    expected_arr_at_risk: float = Field(ge=0, description="p_churn x arr")
    expected_expansion: float = Field(ge=0)
    priority: float
    tier: str
    reasons: list[Reason] = Field(
        description="Top reasons of the churn model, then of the upsell model"
    )
    churn_model: str
    churn_model_version: str
    upsell_model: str
    upsell_model_version: str
    source: Literal["snapshot", "features"] = Field(
        description="snapshot: features looked up by id; features: the record given in the request"
    )


class AccountError(BaseModel):
    """An account that could not be scored (the rest of the request still is)."""

    account_id: str
    error: str


class PortfolioSummary(BaseModel):
    """Body of a successful `POST /portfolio`: the portfolio.json summary (see docs/portfolio-metrics.md)."""

    model_config = ConfigDict(extra="allow")

    as_of: str
    arr_total: float
    weighted_churn_risk: float
    weighted_churn_risk_band: dict[str, Any]
    concentration_top10: Any
    coverage_by_segment: Any
    nrr_realised: Any
    nrr_forecast: Any
    pipeline_velocity: Any
    alerts: list[Any]
    tiers: Any
    allocation: Any
    movers: Any


class ScoreResponse(BaseModel):
    """Body of a successful `POST /score`: one entry per requested account, in order."""

    results: list[AccountScore | AccountError]


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where in the body: field names and list indices")
    msg: str = Field(description="The rule that was broken")
    type: str = Field(description="Machine-readable rule name")


class ErrorBody(BaseModel):
    type: str = Field(
        description="invalid_json, validation_error, unauthorized, unsupported_media_type, "
        "payload_too_large, method_not_allowed, not_ready, internal_error"
    )
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer of `/score` and `/portfolio`."""

    error: ErrorBody
