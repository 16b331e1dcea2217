"""The nightly batch job: score the whole portfolio and publish a run folder.

`run_nightly_job` is the composition: every step below is a plain function
(frames in, frames out) and the data's path reads top to bottom:

    load + validate sources -> as-of date -> champions -> features at as-of
    -> split scorable / rejected -> score (in chunks) -> enrich
    -> portfolio summary (movers vs the previous run) -> drift -> outcomes
    -> write the run folder atomically

Outputs (see docs/operations.md): `scores.parquet`, `rejected.parquet`,
`features.parquet`, `portfolio.json`, `report.html`, `manifest.json`.
Everything but `manifest.json["timings"]` is a deterministic function of the
inputs and the champion models: a rerun gives byte-identical files.

`scores.parquet` stores `reasons` as a list of structs, one per reason:
`{model, rank, feature, value, contribution, text}` (`model` is "churn" or
"upsell", `contribution` the signed log-odds contribution, `value` the
feature's value as text). pandas reads it as an array of dicts per row and
DuckDB as `STRUCT(...)[]` (`SELECT r.* FROM scores, UNNEST(reasons) t(r)`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from features.build import (
    DataPeriod,
    FeatureError,
    FeatureSession,
    arr_at,
    as_of_day,
    build_account_features,
    check_as_of,
    data_period,
    plan_features,
    to_feature_dtypes,
)
from features.contract import Tables
from features.issues import ValidationReport
from features.labels import LabelSettings, session_labels
from features.sources import (
    AccountPartition,
    LoadedSources,
    SourcesError,
    SplitSources,
    load_sources,
    read_sources_config,
    split_sources,
)
from features.spark_engine import SparkEngineError, spark_account_features, spark_session
from serving.drift import DriftSettings, drift_alerts, drift_summary, model_drift
from serving.outcomes import elapsed_run, realised_vs_predicted
from serving.partitions import (
    PORTFOLIO_TABLES,
    concat_tables,
    estimated_source_rows,
    merge_periods,
    merge_reports,
    merge_unknown_columns,
    partition_count,
)
from serving.portfolio import build_portfolio_summary, enrich_scores
from serving.portfolio_inputs import PortfolioInputError
from serving.publish import (
    clean_stale_work_folders,
    staged_run_folder,
    work_folder,
    write_json,
    write_parquet,
)
from serving.report import ReportInput, render_report
from serving.runs import MANIFEST_FILE, RunInfo, default_runs_root, list_runs, previous_run
from serving.scoring import score_accounts
from serving.settings import PortfolioSettings
from serving.spark_scoring import score_on_spark
from training.registry import Champion, ChampionNotFound, UnusableModelVersion, load_champion

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "spark")

# progress(stage, completed, total): total None while unknown
ProgressCallback = Callable[[str, int, int | None], None]

# The scratch folder of the partitions' files (`serving.publish.work_folder`).
PARTITIONS_WORK = "partitions"

REJECTED_COLUMNS: tuple[str, ...] = ("account_id", "as_of", "reason", "detail")

# scores.parquet: DESIGN.md's columns first, in this order, then the rest.
SCORE_COLUMNS: tuple[str, ...] = (
    "account_id",
    "as_of",
    "p_churn",
    "p_upsell",
    "arr",
    "expected_arr_at_risk",
    "expected_expansion",
    "priority",
    "tier",
    "reasons",
    "churn_model_version",
    "upsell_model_version",
)

# The Arrow type of scores.parquet's `reasons` (fixed, so that an empty run has it too).
REASON_TYPE = pa.list_(
    pa.struct(
        [
            ("model", pa.string()),
            ("rank", pa.int64()),
            ("feature", pa.string()),
            ("value", pa.string()),
            ("contribution", pa.float64()),
            ("text", pa.string()),
        ]
    )
)

# What the portfolio layer reads from an account besides its scores: column -> feature.
ENRICHMENT_FEATURES: dict[str, str] = {
    "days_to_renewal": "days_to_renewal",
    "open_expansion_pipeline": "pipeline_expansion_amount",
    "employees": "employees",
}

ACCOUNT_ATTRIBUTES: tuple[str, ...] = (
    "name",
    "parent_account_id",
    "segment",
    "industry",
    "region",
    "owner_id",
    "is_target",
)


class NightlyJobError(Exception):
    """The job could not run; the message says why. Nothing was published."""

    exit_code = 1


class JobInputError(NightlyJobError):
    """The input is unusable (sources, tables, as-of date): fix the input and rerun."""

    exit_code = 2


class NightlyJobSettings(BaseModel):
    """Parameters of the nightly job, with defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    portfolio: PortfolioSettings = Field(default_factory=PortfolioSettings)
    reasons_per_model: int = Field(3, ge=0, le=20, description="Top reasons kept per model")
    chunk_rows: int = Field(
        100_000, gt=0, description="Accounts scored per chunk (bounds memory for reasons)"
    )
    partitions: int | None = Field(
        None,
        gt=0,
        description="Partitions of the accounts loaded and featurised one at a time "
        "(local engine); None: one per `partition_rows` source rows",
    )
    partition_rows: int = Field(
        15_000_000,
        gt=0,
        description="Source rows per partition when the number of partitions is automatic "
        "(7.4 million rows a partition: 2.1 GB peak for a 200,000-account job)",
    )
    psi_alert: float = Field(0.2, gt=0, description="Drift alert when PSI > this")
    allocate: bool = Field(
        True,
        description="Plan the account-manager allocation in this run (a large portfolio may "
        "plan it less often: it is the costliest step)",
    )
    report_top_accounts: int = Field(15, gt=0, description="Rows in the report's top tables")
    report_matrix_points: int = Field(
        1500, gt=0, description="Accounts drawn in the priority matrix (highest priority first)"
    )

    @property
    def drift(self) -> DriftSettings:
        return DriftSettings(psi_alert=self.psi_alert)


@dataclass(frozen=True)
class JobResult:
    """What a nightly run produced; `paths` maps each output to its file."""

    out_dir: Path
    as_of: pd.Timestamp
    active: int
    scored: int
    rejected: int
    summary: dict[str, Any]
    manifest: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.summary.get("alerts", []))


# --------------------------------------------------------------------------- stage timing


class StageTimer:
    """Wall-clock seconds per named stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started_at = time.time()

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            # a stage run several times (once per partition) adds up
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + elapsed, 4)
            logger.info("stage %s took %.2fs", stage, elapsed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": pd.Timestamp(self.started_at, unit="s").isoformat(timespec="seconds"),
            "total_seconds": round(sum(self.seconds.values()), 4),
            "stages_seconds": dict(self.seconds),
        }


def _no_progress(stage: str, completed: int, total: int | None) -> None:
    return None


# --------------------------------------------------------------------------- steps: input


def load_valid_sources(
    sources_path: Path, partition: AccountPartition | None = None
) -> LoadedSources:
    """Load and validate the sources; any error becomes a JobInputError listing the issues."""
    loaded = load_partition(sources_path, partition)
    check_usable(loaded.report, sources_path)
    return loaded


def load_partition(sources_path: Path, partition: AccountPartition | None) -> LoadedSources:
    """The sources (one partition of the accounts, or all); JobInputError if unreadable.

    The report is not checked: a partition's report is checked merged with the others.
    """
    try:
        return load_sources(sources_path, partition)
    except SourcesError as error:
        raise JobInputError(f"cannot load {sources_path}:\n{error}") from None


def split_partitions(sources_path: Path, partitions: int, folder: Path) -> SplitSources:
    """The account-keyed tables split once into `partitions` parts under `folder`
    (`features.sources.split_sources`); JobInputError if a source is unreadable."""
    try:
        return split_sources(sources_path, partitions, folder)
    except SourcesError as error:
        raise JobInputError(f"cannot load {sources_path}:\n{error}") from None


def check_usable(report: ValidationReport, sources_path: Path) -> None:
    """JobInputError listing the errors of the validation `report`, if it has any."""
    if report.ok:
        return
    lines = [
        f"- {issue.table or '-'}.{issue.column or '-'} [{issue.rule}] {issue.message}"
        + (f" e.g. {issue.examples[0]}" if issue.examples else "")
        for issue in report.errors
    ]
    raise JobInputError(
        f"{sources_path} is not usable ({len(lines)} error(s); "
        f"`portfolio validate --sources {sources_path}` shows the full report):\n"
        + "\n".join(lines)
    )


def resolve_as_of(period: DataPeriod, as_of: str | pd.Timestamp | None) -> pd.Timestamp:
    """The as-of date: the one given (checked against the data) or the last date in the data."""
    try:
        return check_as_of(period, period.last_day if as_of is None else as_of)
    except FeatureError as error:
        raise JobInputError(str(error)) from None


def account_attributes(accounts: pd.DataFrame) -> pd.DataFrame:
    """The CRM attributes the scores carry: account_id plus name, parent, segment, etc."""
    columns = ["account_id", *[c for c in ACCOUNT_ATTRIBUTES if c in accounts.columns]]
    return accounts[columns].drop_duplicates("account_id").reset_index(drop=True)


# --------------------------------------------------------------------------- steps: scoring


def split_scorable(
    features: pd.DataFrame, feature_names: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Separate the feature rows that can be scored from those that cannot, with the reason.

    A row is rejected when its account id is missing or repeated, when its ARR
    is not a finite positive number, or when a numeric feature the models read
    is infinite (e.g. an overflowing sum). Missing feature values are fine:
    the models treat them as missing.
    """
    reasons = pd.Series(pd.NA, index=features.index, dtype="string")
    details = pd.Series(pd.NA, index=features.index, dtype="string")

    def reject(mask: pd.Series, reason: str, detail: pd.Series | str) -> None:
        new = mask & reasons.isna()
        reasons[new] = reason
        details[new] = detail[new] if isinstance(detail, pd.Series) else detail

    ids = features["account_id"]
    reject(ids.isna(), "missing_account_id", "the feature row has no account_id")
    reject(
        ids.duplicated(keep=False) & ids.notna(),
        "duplicate_account_id",
        "the account has more than one feature row at this date",
    )
    arr = features["arr"].astype("float64")
    reject(
        ~np.isfinite(arr.to_numpy()) | (arr <= 0).to_numpy(),
        "invalid_arr",
        "arr = " + arr.astype("string").fillna("missing") + " (ARR must be a finite number > 0)",
    )
    numeric = [
        name
        for name in feature_names
        if name in features.columns and pd.api.types.is_numeric_dtype(features[name].dtype)
    ]
    if numeric:
        values = features[numeric].to_numpy(dtype="float64", na_value=np.nan)
        infinite = np.isinf(values)
        rows = infinite.any(axis=1)
        if rows.any():
            columns = np.array(numeric, dtype=object)
            text = pd.Series(
                ["infinite value in " + ", ".join(columns[flags][:5]) for flags in infinite[rows]],
                index=features.index[rows],
                dtype="string",
            ).reindex(features.index)
            reject(pd.Series(rows, index=features.index), "infinite_feature_value", text)

    rejected_mask = reasons.notna()
    rejected = pd.DataFrame(
        {
            "account_id": ids[rejected_mask].astype("string"),
            "as_of": features.loc[rejected_mask, "as_of"],
            "reason": reasons[rejected_mask],
            "detail": details[rejected_mask],
        }
    )
    return features[~rejected_mask], rejected


def chunk_bounds(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of at most `chunk_rows` rows covering `n_rows`."""
    return [(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows)]


def score_in_chunks(
    features: pd.DataFrame,
    churn: Champion,
    upsell: Champion,
    top_k: int,
    chunk_rows: int,
    progress: ProgressCallback = _no_progress,
    spark: SparkSession | None = None,
) -> pd.DataFrame:
    """Score `features` with both champions, `chunk_rows` accounts at a time.

    Each chunk goes through `serving.scoring.score_accounts` (the same
    function the service calls), so memory stays bounded by the chunk size
    however large the portfolio is. With a Spark session, Spark runs it on
    every partition instead (`serving.spark_scoring`). The result is in the
    order of `features`.
    """
    progress("score", 0, len(features))
    if spark is not None:
        scored = score_on_spark(features, churn, upsell, top_k, spark=spark)
        progress("score", len(features), len(features))
        return scored
    bounds = chunk_bounds(len(features), chunk_rows)
    parts: list[pd.DataFrame] = []
    for start, stop in bounds:
        parts.append(score_accounts(features.iloc[start:stop], churn, upsell, top_k=top_k))
        progress("score", stop, len(features))
    if not parts:
        return score_accounts(features, churn, upsell, top_k=top_k)
    return pd.concat(parts, ignore_index=True)


def load_champions() -> tuple[Champion, Champion]:
    """The `churn` and `upsell` champions; NightlyJobError naming the one that is missing."""
    champions = []
    for target in ("churn", "upsell"):
        try:
            champions.append(load_champion(target))
        except ChampionNotFound as error:
            raise NightlyJobError(f"no champion model registered for {target!r}: {error}") from None
        except UnusableModelVersion as error:
            raise NightlyJobError(f"the {target} champion is unusable: {error}") from None
    return champions[0], champions[1]


def with_horizon(settings: PortfolioSettings, horizon_days: int) -> PortfolioSettings:
    """The portfolio settings with the champions' horizon (forecast NRR, bands, labels)."""
    if settings.metrics.horizon_days == horizon_days:
        return settings
    metrics = settings.metrics.model_copy(update={"horizon_days": horizon_days})
    return settings.model_copy(update={"metrics": metrics})


def model_features(*champions: Champion) -> list[str]:
    """The feature columns the champions read (union, in first-seen order)."""
    names: list[str] = []
    for champion in champions:
        names += [n for n in champion.model.feature_names_ if n not in names]
    return names


def with_account_attributes(scores: pd.DataFrame, attributes: pd.DataFrame) -> pd.DataFrame:
    """`scores` with the CRM attributes it does not already have (joined on account_id)."""
    extra = ["account_id", *[c for c in attributes.columns if c not in scores.columns]]
    return scores.merge(attributes[extra], on="account_id", how="left", validate="one_to_one")


def with_enrichment_features(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """`scores` with the features the portfolio layer reads (renewal timing, expansion
    pipeline, employees; see ENRICHMENT_FEATURES), for the features that exist."""
    present = {
        column: feature
        for column, feature in ENRICHMENT_FEATURES.items()
        if feature in features.columns and column not in scores.columns
    }
    if not present:
        return scores
    context = features[["account_id", *present.values()]].rename(
        columns={feature: column for column, feature in present.items()}
    )
    context = context.astype({"account_id": scores["account_id"].dtype})
    return scores.merge(context, on="account_id", how="left", validate="one_to_one")


def arr_history(tables: Tables, as_of: pd.Timestamp, days: int = 365) -> pd.DataFrame:
    """account_id, arr_start (ARR `days` before as_of), arr_end (ARR at as_of): for NRR.

    An account whose ARR is infinite (an overflowing sum; such an account is
    rejected from scoring) is left out, with a warning.
    """
    start = pd.Timestamp(as_of) - pd.Timedelta(days=days)
    arr = arr_at(tables, [start, pd.Timestamp(as_of)])
    wide = arr.pivot_table(index="account_id", columns="as_of", values="arr", aggfunc="sum")
    wide = wide.reindex(columns=[start, pd.Timestamp(as_of)]).fillna(0.0)
    wide.columns = ["arr_start", "arr_end"]
    broken = ~np.isfinite(wide.to_numpy()).all(axis=1)
    if broken.any():
        logger.warning(
            "%d account(s) with an infinite ARR are left out of the realised NRR: %s",
            int(broken.sum()),
            ", ".join(map(str, wide.index[broken][:5])),
        )
        wide = wide[~broken]
    return wide.reset_index().sort_values("account_id", kind="stable").reset_index(drop=True)


def features_for_output(features: pd.DataFrame) -> pd.DataFrame:
    """The scored feature snapshot as `features.parquet` stores it (sorted by account_id)."""
    return features.sort_values("account_id", kind="stable").reset_index(drop=True)


def read_previous_features(run: RunInfo | None) -> pd.DataFrame | None:
    """The feature snapshot of an earlier run (None when there is none or it cannot be read)."""
    if run is None:
        return None
    try:
        return pd.read_parquet(run.path / "features.parquet")
    except (OSError, ValueError) as error:
        logger.warning("cannot read the previous run's features in %s: %s", run.path, error)
        return None


def read_previous_scores(run: RunInfo | None) -> pd.DataFrame | None:
    """The scores of an earlier run (None when there is none or its scores cannot be read)."""
    if run is None:
        return None
    try:
        return pd.read_parquet(run.path / "scores.parquet")
    except (OSError, ValueError) as error:
        logger.warning("cannot read the previous run's scores in %s: %s", run.path, error)
        return None


# --------------------------------------------------------------------------- steps: monitoring


def drift_of_run(
    features: pd.DataFrame,
    scores: pd.DataFrame,
    churn: Champion,
    upsell: Champion,
    settings: DriftSettings,
) -> pd.DataFrame:
    """PSI per feature and for the scores of both champions (rows of `serving.drift.model_drift`)."""
    ordered = features.set_index("account_id").loc[scores["account_id"]].reset_index()
    return pd.concat(
        [
            model_drift("churn", churn.model, ordered, scores["p_churn"].to_numpy(), settings),
            model_drift("upsell", upsell.model, ordered, scores["p_upsell"].to_numpy(), settings),
        ],
        ignore_index=True,
    )


def labels_over_period(
    tables: Tables, period: DataPeriod, as_of: pd.Timestamp, horizon_days: int
) -> pd.DataFrame:
    """The labels at `as_of` (`features.labels`), the window judged against `period`.

    `period` is that of all the sources: `tables` may hold only some of them
    (the revenue table is what labels read).
    """
    with FeatureSession(tables) as session:
        session.period = period
        return session_labels(session, as_of, LabelSettings(horizon_days=horizon_days))


def outcomes_of_earlier_run(
    tables: Tables,
    period: DataPeriod,
    runs: list[RunInfo],
    as_of: pd.Timestamp,
    default_horizon_days: int,
) -> dict[str, Any] | None:
    """Realised vs predicted for the latest earlier run whose horizon has elapsed in the data."""
    run = elapsed_run(runs, period.last_day, default_horizon_days, before=as_of)
    if run is None:
        return None
    horizon = run.horizon_days or default_horizon_days
    scores = read_previous_scores(run)
    if scores is None:
        return None
    labels = labels_over_period(tables, period, run.as_of, horizon)
    result = realised_vs_predicted(scores, labels)
    return {"run": run.path.name, "as_of": str(run.as_of.date()), "horizon_days": horizon, **result}


# --------------------------------------------------------------------------- outputs


def scores_for_output(scores: pd.DataFrame) -> pd.DataFrame:
    """The scores as `scores.parquet` stores them: sorted by account_id, contract columns first."""
    first = [c for c in SCORE_COLUMNS if c in scores.columns]
    rest = [c for c in scores.columns if c not in first]
    return scores[first + rest].sort_values("account_id", kind="stable").reset_index(drop=True)


def rejected_for_output(rejected: pd.DataFrame) -> pd.DataFrame:
    """The rejected accounts sorted by account_id and reason, with the documented dtypes."""
    frame = rejected.astype(
        {"account_id": "string", "as_of": "datetime64[ns]", "reason": "string", "detail": "string"}
    )
    return frame.sort_values(["account_id", "reason"], kind="stable").reset_index(drop=True)


def build_manifest(
    loaded: LoadedSources,
    as_of: pd.Timestamp,
    churn: Champion,
    upsell: Champion,
    horizon_days: int,
    counts: dict[str, Any],
    engine: str,
    previous: RunInfo | None,
) -> dict[str, Any]:
    """What the run was made from and how many rows each stage kept (no clock readings)."""
    return {
        "as_of": as_of,
        "horizon_days": horizon_days,
        "portfolio": loaded.name,
        "sources": str(loaded.path),
        "engine": engine,
        "input_fingerprints": dict(sorted(loaded.fingerprints.items())),
        "models": {
            target: {
                "name": champion.name,
                "version": str(champion.version),
                "run_id": champion.run_id,
                "features": len(champion.model.feature_names_),
            }
            for target, champion in (("churn", churn), ("upsell", upsell))
        },
        "previous_run": previous.path.name if previous is not None else None,
        "row_counts": counts,
        "data_quality": {
            "tables": [load.to_dict() for load in loaded.report.tables],
            "warnings": [
                {k: v for k, v in issue.to_dict().items() if k != "examples"}
                for issue in loaded.report.warnings
            ],
        },
    }


def write_run_files(
    folder: Path,
    scores: pd.DataFrame,
    rejected: pd.DataFrame,
    features: pd.DataFrame,
    summary: dict[str, Any],
    report_html: str,
) -> dict[str, Path]:
    """Write the data files of a run into `folder`; returns name -> path (manifest apart)."""
    paths = {
        "scores": folder / "scores.parquet",
        "rejected": folder / "rejected.parquet",
        "features": folder / "features.parquet",
        "portfolio": folder / "portfolio.json",
        "report": folder / "report.html",
    }
    write_parquet(scores, paths["scores"], {"reasons": REASON_TYPE})
    write_parquet(rejected, paths["rejected"])
    write_parquet(features, paths["features"])
    write_json(summary, paths["portfolio"])
    paths["report"].write_text(report_html, encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- steps: composed


def load_inputs(
    sources_path: Path, as_of: str | pd.Timestamp | None
) -> tuple[LoadedSources, DataPeriod, pd.Timestamp]:
    """The validated sources, the period the data covers and the as-of date."""
    loaded = load_valid_sources(sources_path)
    try:
        period = data_period(loaded.tables)
    except FeatureError as error:
        raise JobInputError(str(error)) from None
    return loaded, period, resolve_as_of(period, as_of)


@contextlib.contextmanager
def engine_session(engine: str, spark_master: str | None = None) -> Iterator[SparkSession | None]:
    """The Spark session features and scoring share (engine "spark"); None for the local engine."""
    if engine != "spark":
        yield None
        return
    try:
        with spark_session(spark_master) as spark:
            yield spark
    except SparkEngineError as error:
        raise NightlyJobError(str(error)) from None


def active_account_features(
    tables: Tables, as_of: pd.Timestamp, spark: SparkSession | None = None
) -> pd.DataFrame:
    """The features of every account active at `as_of`, sorted by account_id (on Spark if given)."""
    try:
        if spark is None:
            features = build_account_features(tables, as_of)
        else:
            features = spark_account_features(spark, tables, as_of)
    except FeatureError as error:
        raise JobInputError(str(error)) from None
    return features.sort_values("account_id", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- steps: partitioned input


@dataclass
class PartitionResult:
    """What the run keeps of one partition once its source rows are dropped."""

    index: int
    report: ValidationReport
    fingerprints: dict[str, str]
    tables: Tables  # the PORTFOLIO_TABLES among its tables
    period: DataPeriod | None  # None: no dated rows at all
    features: pd.DataFrame | None = None
    as_of: pd.Timestamp | None = None
    unknown: dict[str, set[str]] | None = None  # the unknown columns its features were built with


@dataclass(frozen=True)
class PortfolioInputs:
    """The validated sources (whole `PORTFOLIO_TABLES` only), period, as-of date and features."""

    loaded: LoadedSources
    period: DataPeriod
    as_of: pd.Timestamp
    features: pd.DataFrame
    partitions: int


def partition_features(
    tables: Tables, as_of: pd.Timestamp | None, unknown: dict[str, set[str]] | None
) -> tuple[pd.DataFrame, pd.Timestamp, dict[str, set[str]]]:
    """Features of the accounts of one partition active at `as_of` (default: its last day).

    `unknown` gives the optional columns to treat as unfilled (by default those
    no known row of these tables fills; see `FeatureSession.unknown_columns`).
    Returns the features (not sorted) with the as-of date and unknown columns used.
    """
    with FeatureSession(tables) as session:
        day = as_of if as_of is not None else session.period.last_day
        used = session.unknown_columns(day) if unknown is None else unknown
        frame = session.run_plan(plan_features(session.columns, day, used))
        return to_feature_dtypes(frame, session.features), day, used


def number_of_partitions(sources_path: Path, settings: NightlyJobSettings) -> int:
    """The partitions to run: the setting, or one per `partition_rows` rows of the sources."""
    if settings.partitions is not None:
        return settings.partitions
    try:
        config = read_sources_config(sources_path)
        rows = estimated_source_rows(config, sources_path.resolve().parent)
    except (SourcesError, duckdb.Error, OSError) as error:
        logger.info("cannot size the sources (%s): one partition", error)
        return 1
    return partition_count(rows, settings.partition_rows)


def load_portfolio_inputs(
    sources_path: Path,
    as_of: str | pd.Timestamp | None,
    partitions: int,
    timer: StageTimer,
    progress: ProgressCallback = _no_progress,
    work_dir: Path | None = None,
) -> PortfolioInputs:
    """Load, validate and build features `partitions` partitions of the accounts at a time.

    With more than one partition, the account-keyed tables are first split
    into one set of files per partition, in one pass over the sources
    (`split_partitions`), in a scratch folder under `work_dir` (default: the
    system's temporary folder) removed when done. Each partition is then
    loaded from its own files (only its accounts' rows), validated and turned
    into features, then its source rows are dropped; the reports, periods and
    unknown columns are merged (`serving.partitions`), and a partition whose
    features were built at another as-of date or with other unknown columns
    than the whole portfolio's (possible only when a partition lacks the last
    dates or some optional values) is built again. The result equals loading
    everything at once. JobInputError for unusable input.
    """
    parent = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
    if partitions == 1:
        clean_stale_work_folders(parent, PARTITIONS_WORK)  # what a killed partitioned run left
        return _load_partitions(sources_path, as_of, partitions, None, timer, progress)
    with work_folder(parent, PARTITIONS_WORK) as folder:
        with timer("load"):
            split = split_partitions(sources_path, partitions, folder)
        return _load_partitions(sources_path, as_of, partitions, split, timer, progress)


def _load_partitions(
    sources_path: Path,
    as_of: str | pd.Timestamp | None,
    partitions: int,
    split: SplitSources | None,
    timer: StageTimer,
    progress: ProgressCallback,
) -> PortfolioInputs:
    requested = None
    if as_of is not None:
        try:
            requested = as_of_day(as_of)
        except FeatureError as error:
            raise JobInputError(str(error)) from None
    parts: list[PartitionResult] = []
    usable = True
    sources: LoadedSources | None = None  # the first partition's, without its tables
    progress("load", 0, partitions)
    for index in range(partitions):
        partition = AccountPartition(index, partitions, split)
        with timer("load"):
            loaded = load_partition(sources_path, partition)
        usable = usable and not [e for e in loaded.report.errors if e.rule != "empty_table"]
        try:
            period = data_period(loaded.tables)
        except FeatureError:
            period = None
        part = PartitionResult(
            index,
            loaded.report,
            loaded.fingerprints,
            {name: frame for name, frame in loaded.tables.items() if name in PORTFOLIO_TABLES},
            period,
        )
        if usable and period is not None:
            with timer("features"):
                part.features, part.as_of, part.unknown = partition_features(
                    loaded.tables, requested, None
                )
        progress("features", index + 1, partitions)
        if sources is None:
            sources = dataclasses.replace(loaded, tables={})
        del loaded
        parts.append(part)
        progress("load", index + 1, partitions)

    whole = concat_tables([part.tables for part in parts])
    for part in parts:
        part.tables = {}  # in `whole` now
    report = merge_reports([part.report for part in parts], whole, partitioned=partitions > 1)
    check_usable(report, sources_path)
    periods = [part.period for part in parts if part.period is not None]
    if not periods:
        raise JobInputError(
            "the tables hold no dated rows: features need at least one row in the revenue table"
        )
    period = merge_periods(periods)
    day = resolve_as_of(period, as_of)

    def rebuild(part: PartitionResult, unknown: dict[str, set[str]] | None) -> None:
        logger.info("building the features of partition %d again", part.index)
        with timer("load"):
            loaded = load_partition(sources_path, AccountPartition(part.index, partitions, split))
        with timer("features"):
            part.features, part.as_of, part.unknown = partition_features(
                loaded.tables, day, unknown
            )

    built = [part for part in parts if part.features is not None]
    for part in built:
        if part.as_of != day:
            rebuild(part, None)
    unknown = merge_unknown_columns(part.unknown or {} for part in built)
    for part in built:
        if part.unknown != unknown:
            rebuild(part, unknown)

    features = pd.concat([part.features for part in built], ignore_index=True)
    for part in built:
        part.features = None  # in `features` now
    features = features.sort_values("account_id", kind="stable").reset_index(drop=True)
    assert sources is not None  # partitions >= 1
    loaded = dataclasses.replace(sources, tables=whole, report=report)
    return PortfolioInputs(loaded, period, day, features, partitions)


def summarise_portfolio(
    scored: pd.DataFrame,
    scorable: pd.DataFrame,
    tables: Tables,
    as_of: pd.Timestamp,
    settings: PortfolioSettings,
    previous: RunInfo | None,
    allocate: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Enriched scores and the portfolio summary (movers against the `previous` run).

    With `allocate` off the account-manager plan is skipped and the summary says so.
    """
    accounts = tables["accounts"]
    scored = with_account_attributes(scored, account_attributes(accounts))
    scored = with_enrichment_features(scored, scorable)
    previous_scores = read_previous_scores(previous)
    try:
        enriched = enrich_scores(scored, settings)
        summary = build_portfolio_summary(
            enriched,
            accounts,
            arr_history(tables, as_of),
            tables.get("opportunities"),
            tables.get("account_managers") if allocate else None,
            as_of,
            settings,
            previous_scores=previous_scores,
            current_features=scorable if previous_scores is not None else None,
            previous_features=read_previous_features(previous),
        )
    except PortfolioInputError as error:
        raise JobInputError(f"the portfolio cannot be summarised: {error}") from None
    if not allocate:
        summary["allocation"] = {
            "status": "skipped",
            "reason": "the allocation is off in this run's settings (allocate = false)",
        }
    return enriched, summary


def stage_counts(
    features: pd.DataFrame, scored: pd.DataFrame, rejected: pd.DataFrame
) -> dict[str, Any]:
    """Accounts per stage; NightlyJobError if scored + rejected is not every active account."""
    counts = {
        "active_accounts": len(features),
        "scored": len(scored),
        "rejected": len(rejected),
        "rejected_by_reason": rejected["reason"].value_counts().sort_index().to_dict(),
    }
    if counts["scored"] + counts["rejected"] != counts["active_accounts"]:
        raise NightlyJobError(
            f"{counts['active_accounts']} active accounts but {counts['scored']} scored and "
            f"{counts['rejected']} rejected: the job lost accounts"
        )
    return counts


def with_monitoring(
    summary: dict[str, Any],
    drift: pd.DataFrame,
    outcomes: dict[str, Any] | None,
    settings: DriftSettings,
) -> dict[str, Any]:
    """The summary with the drift alerts appended and the `drift` and `outcomes` sections."""
    return {
        **summary,
        "alerts": [*summary.get("alerts", []), *drift_alerts(drift, settings)],
        "drift": drift_summary(drift, settings),
        "outcomes": outcomes,
    }


def report_for_run(
    loaded: LoadedSources,
    as_of: pd.Timestamp,
    summary: dict[str, Any],
    scores: pd.DataFrame,
    rejected: pd.DataFrame,
    drift: pd.DataFrame,
    champions: tuple[Champion, Champion],
    horizon_days: int,
    settings: NightlyJobSettings,
) -> str:
    """The run's HTML report."""
    churn, upsell = champions
    return render_report(
        ReportInput(
            summary=summary,
            scores=scores,
            run={
                "name": loaded.name,
                "as_of": as_of.date().isoformat(),
                "scored": len(scores),
                "rejected": len(rejected),
                "churn_model": f"{churn.name} v{churn.version}",
                "upsell_model": f"{upsell.name} v{upsell.version}",
                "horizon_days": horizon_days,
                "sources": str(loaded.path),
            },
            drift=drift,
            psi_alert=settings.psi_alert,
            outcomes=summary.get("outcomes"),
            data_tables=[load.to_dict() for load in loaded.report.tables],
            rejected=rejected,
            top_accounts=settings.report_top_accounts,
            matrix_points=settings.report_matrix_points,
            high_risk_p_churn=settings.portfolio.segmentation.high_risk_p_churn,
            accounts=loaded.tables.get("accounts"),
        )
    )


# --------------------------------------------------------------------------- the job


def run_nightly_job(
    sources_path: str | Path,
    as_of: str | pd.Timestamp | None = None,
    out_dir: str | Path | None = None,
    settings: NightlyJobSettings | None = None,
    engine: str = "local",
    spark_master: str | None = None,
    progress: ProgressCallback | None = None,
) -> JobResult:
    """Score every account active at `as_of` and publish the run folder `out_dir` atomically.

    Raises JobInputError (unusable input) or NightlyJobError (e.g. no
    champion); in both cases nothing is published and an earlier output of
    `out_dir` is left as it was.
    """
    settings = settings or NightlyJobSettings()
    progress = progress or _no_progress
    if engine not in ENGINES:
        raise JobInputError(
            f"engine {engine!r} is not available in this build; engines: {', '.join(ENGINES)}"
        )
    timer = StageTimer()
    sources_path = Path(sources_path)
    partitions = number_of_partitions(sources_path, settings) if engine == "local" else 1

    features: pd.DataFrame | None = None
    if engine == "local":
        # load, validate and build features part by part of the accounts (bounded memory)
        # the partitions' files are written beside the run folders
        runs_root = Path(out_dir).absolute().parent if out_dir is not None else default_runs_root()
        inputs = load_portfolio_inputs(
            sources_path, as_of, partitions, timer, progress, work_dir=runs_root
        )
        loaded, period, day, features = inputs.loaded, inputs.period, inputs.as_of, inputs.features
    else:
        with timer("load"):
            progress("load", 0, 1)
            loaded, period, day = load_inputs(sources_path, as_of)
            progress("load", 1, 1)
    out = (
        Path(out_dir) if out_dir is not None else default_runs_root() / str(day.date())
    ).absolute()
    previous = previous_run(out.parent, day, exclude=out)

    with timer("models"):
        progress("models", 0, 2)
        churn, upsell = load_champions()
        progress("models", 2, 2)
    horizon_days = int(churn.metadata.get("horizon_days", settings.portfolio.metrics.horizon_days))
    portfolio_settings = with_horizon(settings.portfolio, horizon_days)

    with engine_session(engine, spark_master) as spark:
        if features is None:
            with timer("features"):
                progress("features", 0, 1)
                features = active_account_features(loaded.tables, day, spark)
                progress("features", 1, 1)

        with timer("score"):
            scorable, rejected = split_scorable(features, model_features(churn, upsell))
            scored = score_in_chunks(
                scorable,
                churn,
                upsell,
                settings.reasons_per_model,
                settings.chunk_rows,
                progress,
                spark=spark,
            )

    with timer("portfolio"):
        progress("portfolio", 0, 1)
        enriched, summary = summarise_portfolio(
            scored, scorable, loaded.tables, day, portfolio_settings, previous, settings.allocate
        )
        progress("portfolio", 1, 1)

    with timer("monitoring"):
        progress("monitoring", 0, 2)
        drift = drift_of_run(scorable, enriched, churn, upsell, settings.drift)
        progress("monitoring", 1, 2)
        outcomes = outcomes_of_earlier_run(
            loaded.tables, period, list_runs(out.parent), day, horizon_days
        )
        summary = with_monitoring(summary, drift, outcomes, settings.drift)
        progress("monitoring", 2, 2)

    counts = stage_counts(features, enriched, rejected)
    manifest = build_manifest(loaded, day, churn, upsell, horizon_days, counts, engine, previous)
    manifest["partitions"] = partitions
    scores_out, rejected_out = scores_for_output(enriched), rejected_for_output(rejected)

    with timer("report"):
        progress("report", 0, 1)
        report_html = report_for_run(
            loaded,
            day,
            summary,
            scores_out,
            rejected_out,
            drift,
            (churn, upsell),
            horizon_days,
            settings,
        )
        progress("report", 1, 1)

    with staged_run_folder(out) as staged:
        with timer("write"):
            progress("write", 0, 1)
            staged_paths = write_run_files(
                staged,
                scores_out,
                rejected_out,
                features_for_output(scorable),
                summary,
                report_html,
            )
            progress("write", 1, 1)
        manifest = {**manifest, "timings": timer.as_dict()}
        write_json(manifest, staged / MANIFEST_FILE)
    paths = {name: out / path.name for name, path in staged_paths.items()}
    paths["manifest"] = out / MANIFEST_FILE
    return JobResult(
        out_dir=out,
        as_of=day,
        active=counts["active_accounts"],
        scored=counts["scored"],
        rejected=counts["rejected"],
        summary=summary,
        manifest=manifest,
        paths=paths,
    )
