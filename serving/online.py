"""The online service's logic: the scoring state, how it is loaded, how requests are answered.

`ScoringState` is everything one answer needs, immutable and swapped as one
object (see `serving.online_runtime`): the two champions, the feature
snapshot of the latest nightly run, the answers for every snapshot account
(scored when the state is loaded, with the same functions as the nightly job),
the portfolio summary, and the rules what-if records are checked against.

- An account given by id is answered from the precomputed answers (the
  snapshot's features scored by the current champions).
- An account given with `features` is scored live: for an id in the snapshot
  the given features replace the snapshot's values; any other id must give
  every feature the models read (null when unknown). Scores, reasons,
  expected values, priority and tier come from the same functions the
  nightly job uses (`serving.scoring`, `serving.portfolio`), the priority and
  tier relative to the snapshot's portfolio.

Answers are JSON bytes built once per account, so a request costs a lookup
and a join, not a serialisation of the whole result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
import pandas as pd

from serving.api_guard import ApiError, GuardSettings, error_body, validation_error
from serving.api_models import AccountRequest
from serving.batch import (
    ACCOUNT_ATTRIBUTES,
    ENRICHMENT_FEATURES,
    account_attributes,
    arr_history,
    load_valid_sources,
    read_previous_features,
    read_previous_scores,
    with_account_attributes,
    with_enrichment_features,
)
from serving.online_enrich import PortfolioReference, enrich_record, fit_reference
from serving.online_runtime import ScoringRuntime
from serving.online_settings import ServiceSettings
from serving.portfolio import build_portfolio_summary, enrich_scores, plan_allocation
from serving.publish import json_ready
from serving.runs import MANIFEST_FILE, latest_run_dir, previous_run, read_run_info
from serving.scoring import score_accounts, score_records
from serving.settings import PortfolioSettings

logger = logging.getLogger(__name__)

TARGETS: tuple[str, ...] = ("churn", "upsell")
FEATURES_FILE = "features.parquet"
SCORES_FILE = "scores.parquet"

# Requests with at most this many live (what-if) records are scored on the event
# loop; larger ones in a worker thread so that small requests keep flowing.
INLINE_LIVE_RECORDS = 64
# Filtered portfolio summaries kept per state.
PORTFOLIO_CACHE_SIZE = 64
# Features that can never be negative in a what-if record.
NON_NEGATIVE_FEATURES: frozenset[str] = frozenset({"arr"})

# The answer fields, in order (the columns of scores.parquet plus model names and the source).
ANSWER_FIELDS: tuple[str, ...] = (
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
    "churn_model",
    "churn_model_version",
    "upsell_model",
    "upsell_model_version",
)


# --------------------------------------------------------------------------- the state


@dataclass(frozen=True)
class StateKey:
    """Which champions and which snapshot a state serves."""

    churn_version: str
    upsell_version: str
    snapshot: str | None  # "<folder>@<manifest mtime ns>", None without a snapshot

    def __str__(self) -> str:
        snapshot = self.snapshot.rsplit("@", 1)[0] if self.snapshot else "none"
        return f"churn v{self.churn_version}, upsell v{self.upsell_version}, snapshot {snapshot}"


@dataclass(frozen=True)
class Snapshot:
    """A nightly run folder as the service uses it."""

    path: Path
    fingerprint: str
    as_of: pd.Timestamp
    features: pd.DataFrame
    scores: pd.DataFrame | None
    records: Mapping[str, Mapping[str, Any]]

    @property
    def as_of_text(self) -> str:
        return self.as_of.date().isoformat()


@dataclass(frozen=True)
class FeatureRules:
    """What a what-if record may and must hold."""

    model_features: tuple[str, ...]
    categorical: frozenset[str]
    accepted: frozenset[str]
    non_negative: frozenset[str] = NON_NEGATIVE_FEATURES


@dataclass(frozen=True)
class PortfolioInputs:
    """The tables the portfolio summary reads besides the scores (None when unavailable)."""

    accounts: pd.DataFrame | None = None
    arr_history: pd.DataFrame | None = None
    opportunities: pd.DataFrame | None = None
    account_managers: pd.DataFrame | None = None
    previous_scores: pd.DataFrame | None = None
    previous_features: pd.DataFrame | None = None


@dataclass(frozen=True)
class ScoringState:
    """What every answer needs; immutable, swapped as one object."""

    key: StateKey
    churn: Any  # training.registry.Champion
    upsell: Any
    snapshot: Snapshot | None
    answers: Mapping[str, bytes]  # account_id -> answer (snapshot accounts)
    portfolio: bytes | None  # the unfiltered summary
    rules: FeatureRules
    top_reasons: int
    reference: PortfolioReference
    portfolio_settings: PortfolioSettings = field(default_factory=PortfolioSettings)
    enriched: pd.DataFrame | None = field(default=None, repr=False)
    inputs: PortfolioInputs | None = field(default=None, repr=False)
    allocation: Any = field(default=None, repr=False)
    _portfolio_cache: OrderedDict[tuple[tuple[str, str], ...], bytes] = field(
        default_factory=OrderedDict, compare=False, repr=False
    )
    _portfolio_lock: threading.Lock = field(
        default_factory=threading.Lock, compare=False, repr=False
    )


def snapshot_fingerprint(folder: Path) -> str:
    """Identifies one publication of a run folder (a rerun into the same folder changes it)."""
    manifest = folder / MANIFEST_FILE
    return f"{folder.resolve()}@{manifest.stat().st_mtime_ns}"


def read_snapshot(folder: Path) -> Snapshot:
    """Read the feature snapshot (and the nightly scores, when present) of a run folder."""
    info = read_run_info(folder)
    if info is None:
        raise ValueError(f"{folder} is not a completed run folder (no readable {MANIFEST_FILE})")
    features_path = folder / FEATURES_FILE
    if not features_path.is_file():
        raise ValueError(f"{folder} has no {FEATURES_FILE}")
    features = pd.read_parquet(features_path)
    if "account_id" not in features.columns:
        raise ValueError(f"{features_path} has no account_id column")
    features["account_id"] = features["account_id"].astype("string")
    duplicated = features["account_id"].duplicated()
    if duplicated.any():
        example = features.loc[duplicated, "account_id"].iloc[0]
        raise ValueError(f"{features_path} lists account {example!r} more than once")
    scores_path = folder / SCORES_FILE
    scores = pd.read_parquet(scores_path) if scores_path.is_file() else None
    return Snapshot(
        path=folder,
        fingerprint=snapshot_fingerprint(folder),
        as_of=info.as_of,
        features=features,
        scores=scores,
        records=feature_records(features),
    )


def feature_records(features: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Feature rows as plain records by account id (missing values as None)."""
    columns = [c for c in features.columns if c not in ("account_id", "as_of")]
    values = features[columns].astype(object).where(features[columns].notna(), None)
    ids = features["account_id"].tolist()
    return {
        account_id: dict(zip(columns, row, strict=True))
        for account_id, row in zip(ids, values.itertuples(index=False, name=None), strict=True)
    }


def feature_rules(churn_model: Any, upsell_model: Any, snapshot: Snapshot | None) -> FeatureRules:
    """The what-if rules for two models (and the snapshot's extra columns)."""
    names: list[str] = []
    categorical: set[str] = set()
    for model in (churn_model, upsell_model):
        names += [n for n in model.feature_names_ if n not in names]
        categorical |= set(getattr(model, "categories_", {}))
    accepted = set(names) | set(NON_NEGATIVE_FEATURES)
    if snapshot is not None:
        accepted |= {c for c in snapshot.features.columns if c not in ("account_id", "as_of")}
    return FeatureRules(
        model_features=tuple(names),
        categorical=frozenset(categorical),
        accepted=frozenset(accepted),
    )


# --------------------------------------------------------------------------- answers as JSON


def answer_bytes(row: Mapping[str, Any], source: str) -> bytes:
    """One account's answer as JSON bytes (fields in `ANSWER_FIELDS` order, then `source`).

    Snapshot rows (pandas and numpy values) go through `json_ready`, as the
    nightly job's JSON does; live answers hold plain Python values and are
    dumped as they are (orjson). NaN or infinity becomes null.
    """
    document = {name: row.get(name) for name in ANSWER_FIELDS}
    document["source"] = source
    if source != "features":
        return orjson.dumps(json_ready(document))
    try:
        return orjson.dumps(document)
    except TypeError:
        return orjson.dumps(json_ready(document))


def error_entry(account_id: str, message: str) -> bytes:
    return orjson.dumps({"account_id": account_id, "error": message})


def results_body(entries: Iterable[bytes]) -> bytes:
    return b'{"results":[' + b",".join(entries) + b"]}"


# --------------------------------------------------------------------------- what-if records


def check_features(
    index: int,
    features: Mapping[str, Any],
    base: Mapping[str, Any] | None,
    rules: FeatureRules,
) -> dict[str, Any]:
    """The record to score for a what-if account, or an ApiError (422) naming the field and rule."""
    loc: list[str | int] = ["accounts", index, "features"]
    unknown = sorted(name for name in features if name not in rules.accepted)
    if unknown:
        known = ", ".join(sorted(rules.model_features)[:20])
        raise validation_error(
            [*loc, unknown[0]],
            f"not a feature of the models (unknown: {unknown[:5]}); the models read: {known}"
            + (" ..." if len(rules.model_features) > 20 else ""),
            "unknown_feature",
        )
    for name, value in features.items():
        if name in rules.non_negative and (value is None or isinstance(value, bool)):
            raise validation_error(
                [*loc, name], "must be a number (it weighs the churn risk), not null", "number_type"
            )
        if value is None:
            continue
        if name in rules.categorical:
            if not isinstance(value, str):
                raise validation_error(
                    [*loc, name], "must be a string (a category) or null", "category_type"
                )
        elif isinstance(value, str):
            raise validation_error([*loc, name], "must be a number or null", "number_type")
        elif name in rules.non_negative and value < 0:
            raise validation_error(
                [*loc, name], f"must be at least 0, got {value}", "greater_than_equal"
            )
    if base is None:
        wanted = [*rules.model_features, *sorted(rules.non_negative - set(rules.model_features))]
        missing = [name for name in wanted if name not in features]
        if missing:
            raise validation_error(
                loc,
                f"{len(missing)} model feature(s) missing, e.g. {missing[:5]}: an account "
                "that is not in the snapshot needs every feature (null when unknown)",
                "missing_features",
            )
        return dict(features)
    record = dict(base)
    record.update(features)
    return record


# --------------------------------------------------------------------------- metrics


@dataclass
class ServiceMetrics:
    """Prometheus counters of the service (per model version)."""

    predictions: Any = None

    @classmethod
    def create(cls) -> ServiceMetrics:
        """Register the counters (call in the serving process, after BentoML set up metrics)."""
        import prometheus_client

        name = "portfolio_predictions"
        try:
            counter = prometheus_client.Counter(
                name,
                "Accounts scored, by target, registered model, version and source "
                "(snapshot lookup or what-if features)",
                ["target", "model", "version", "source"],
            )
        except ValueError:  # already registered in this process
            counter = prometheus_client.REGISTRY._names_to_collectors[f"{name}_total"]
        return cls(predictions=counter)

    def count(self, state: ScoringState, source: str, n: int) -> None:
        if self.predictions is None or n == 0:
            return
        for target, champion in (("churn", state.churn), ("upsell", state.upsell)):
            self.predictions.labels(target, champion.name, str(champion.version), source).inc(n)


# --------------------------------------------------------------------------- answering


def not_ready_response(runtime: ScoringRuntime[ScoringState]) -> tuple[int, bytes]:
    reason = redact_credentials(runtime.last_error or "the champion models are still loading")
    return 503, error_body("not_ready", f"the service is not ready: {reason}")


# `scheme://user:password@host` (or `scheme://token@host`) in a URI.
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact_credentials(text: str) -> str:
    """`text` with the user and password of every URI replaced by `***` (for answers and logs)."""
    return _URI_CREDENTIALS.sub(r"\g<scheme>***@", text)


def plan_and_score(
    state: ScoringState, accounts: Sequence[AccountRequest], settings: ServiceSettings
) -> tuple[bytes, int, int]:
    """The `/score` body for `accounts`, and how many were looked up and scored live."""
    if len(accounts) > settings.max_accounts:
        raise validation_error(
            ["accounts"],
            f"at most {settings.max_accounts} accounts per request, got {len(accounts)}",
            "too_long",
        )
    snapshot = state.snapshot
    records = snapshot.records if snapshot is not None else {}
    entries: list[bytes | None] = []
    live_positions: list[int] = []
    live_records: list[dict[str, Any]] = []
    live_ids: list[str] = []
    looked_up = 0
    for index, account in enumerate(accounts):
        if account.features is None:
            answer = state.answers.get(account.account_id)
            if answer is None:
                answer = error_entry(account.account_id, _unknown_account_message(snapshot))
            else:
                looked_up += 1
            entries.append(answer)
            continue
        base = records.get(account.account_id)
        live_records.append(check_features(index, account.features, base, state.rules))
        live_ids.append(account.account_id)
        live_positions.append(index)
        entries.append(None)
    if live_records:
        try:
            answers = score_live(state, live_ids, live_records)
        except ValueError as error:  # ScoringInputError included: a record the models refuse
            raise ApiError(
                422,
                "validation_error",
                f"the what-if features cannot be scored: {error}",
                ({"loc": ["accounts"], "msg": str(error), "type": "unscorable_features"},),
            ) from None
        for position, answer in zip(live_positions, answers, strict=True):
            entries[position] = answer
    return results_body(e for e in entries if e is not None), looked_up, len(live_records)


def _unknown_account_message(snapshot: Snapshot | None) -> str:
    if snapshot is None:
        return (
            "unknown account_id: no feature snapshot is loaded (run `portfolio score` first), "
            "give the account's features instead"
        )
    return (
        f"unknown account_id: not in the feature snapshot of {snapshot.as_of_text} "
        f"({snapshot.path.name}); give its features to score it"
    )


async def answer_score(
    runtime: ScoringRuntime[ScoringState],
    settings: ServiceSettings,
    metrics: ServiceMetrics,
    accounts: Sequence[AccountRequest],
) -> tuple[int, bytes]:
    """HTTP status and body for `POST /score`."""
    state = runtime.state  # read once: a swap during this request does not affect it
    if state is None:
        return not_ready_response(runtime)
    live = sum(1 for account in accounts if account.features is not None)
    try:
        if live > INLINE_LIVE_RECORDS:
            body, looked_up, scored = await anyio.to_thread.run_sync(
                plan_and_score, state, accounts, settings
            )
        else:
            body, looked_up, scored = plan_and_score(state, accounts, settings)
    except ApiError as error:
        return error.status, error.body()
    metrics.count(state, "snapshot", looked_up)
    metrics.count(state, "features", scored)
    return 200, body


async def answer_portfolio(
    runtime: ScoringRuntime[ScoringState], filters: Mapping[str, str]
) -> tuple[int, bytes]:
    """HTTP status and body for `POST /portfolio`."""
    state = runtime.state
    if state is None:
        return not_ready_response(runtime)
    if state.snapshot is None or state.portfolio is None:
        return 409, error_body(
            "no_snapshot",
            "no nightly run is loaded: run `portfolio score` (or pass --snapshot) for a portfolio summary",
        )
    if not filters:
        return 200, state.portfolio
    if state.enriched is None:
        return not_ready_response(runtime)
    try:
        body = await anyio.to_thread.run_sync(filtered_portfolio, state, dict(filters))
    except ApiError as error:
        return error.status, error.body()
    return 200, body


def filtered_portfolio(state: ScoringState, filters: Mapping[str, str]) -> bytes:
    """The summary of the accounts matching every filter (cached per state)."""
    cache_key = tuple(sorted(filters.items()))
    with state._portfolio_lock:
        cached = state._portfolio_cache.get(cache_key)
    if cached is not None:
        return cached
    body = portfolio_summary_bytes(state, filters)
    with state._portfolio_lock:
        state._portfolio_cache[cache_key] = body
        while len(state._portfolio_cache) > PORTFOLIO_CACHE_SIZE:
            state._portfolio_cache.popitem(last=False)
    return body


# --------------------------------------------------------------------------- building a state


def configure_service_logging() -> None:
    """Let this package's INFO messages (swaps, load failures) reach BentoML's log handlers."""
    package = logging.getLogger("serving")
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)


# MLflow's HTTP client retries a refused connection for minutes by default; the
# refresh loop retries on its own schedule, so each registry call should fail fast.
REGISTRY_CLIENT_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def configure_registry_client(environ: MutableMapping[str, str] | None = None) -> None:
    """Set fail-fast MLflow HTTP defaults in the serving process (explicit settings win)."""
    env = os.environ if environ is None else environ
    for name, value in REGISTRY_CLIENT_DEFAULTS.items():
        env.setdefault(name, value)


def guard_settings_from_env() -> GuardSettings:
    return ServiceSettings.from_env().guard_settings()


def resolve_snapshot_dir(settings: ServiceSettings) -> Path | None:
    if settings.snapshot_dir is not None:
        return settings.snapshot_dir
    return latest_run_dir(settings.runs_root)


# --------------------------------------------------------------------------- building a state


def load_portfolio_inputs(snapshot: Snapshot) -> PortfolioInputs:
    """The run's sources (named in its manifest) and the previous run's scores.

    When the sources cannot be read (moved, or another machine), the summary is
    computed without them and the account attributes come from the run's
    scores; the log says why.
    """
    previous = previous_run(snapshot.path.parent, snapshot.as_of, exclude=snapshot.path)
    earlier = {
        "previous_scores": read_previous_scores(previous),
        "previous_features": read_previous_features(previous),
    }
    manifest = json.loads((snapshot.path / MANIFEST_FILE).read_text(encoding="utf-8"))
    sources = manifest.get("sources")
    if not sources:
        logger.warning(
            "%s names no sources: portfolio summary without account tables", snapshot.path
        )
        return PortfolioInputs(**earlier)
    try:
        loaded = load_valid_sources(Path(sources))
        tables = loaded.tables
        history = arr_history(tables, snapshot.as_of)
    except Exception as error:
        logger.warning(
            "cannot read the sources %s of %s (%s): portfolio summary without account tables",
            sources,
            snapshot.path,
            error,
        )
        return PortfolioInputs(**earlier)
    return PortfolioInputs(
        accounts=tables.get("accounts"),
        arr_history=history,
        opportunities=tables.get("opportunities"),
        account_managers=tables.get("account_managers"),
        **earlier,
    )


def score_snapshot(
    snapshot: Snapshot,
    inputs: PortfolioInputs,
    churn: Any,
    upsell: Any,
    top_k: int,
    portfolio_settings: PortfolioSettings,
) -> pd.DataFrame:
    """The snapshot scored and enriched as the nightly job does it (its functions, its order)."""
    scored = score_accounts(snapshot.features, churn, upsell, top_k=top_k)
    if inputs.accounts is not None:
        attributes = account_attributes(inputs.accounts)
    else:  # without the sources: the attributes the run's scores (or features) carry
        carrier = snapshot.scores if snapshot.scores is not None else snapshot.features
        columns = [c for c in ACCOUNT_ATTRIBUTES if c in carrier.columns]
        attributes = carrier[["account_id", *columns]].astype({"account_id": "string"})
    scored = with_account_attributes(scored, attributes)
    scored = with_enrichment_features(scored, snapshot.features)
    return enrich_scores(scored, portfolio_settings)


def build_state(
    churn: Any,
    upsell: Any,
    snapshot: Snapshot | None,
    top_reasons: int,
    portfolio_settings: PortfolioSettings,
) -> ScoringState:
    """Everything the answers need, computed once for these champions and this snapshot."""
    key = StateKey(
        str(churn.version),
        str(upsell.version),
        snapshot.fingerprint if snapshot is not None else None,
    )
    rules = feature_rules(churn.model, upsell.model, snapshot)
    if snapshot is None:
        empty = pd.DataFrame({"account_id": pd.Series(dtype="string"), "priority": [], "arr": []})
        return ScoringState(
            key=key,
            churn=churn,
            upsell=upsell,
            snapshot=None,
            answers={},
            portfolio=None,
            rules=rules,
            top_reasons=top_reasons,
            reference=fit_reference(empty, portfolio_settings),
        )
    inputs = load_portfolio_inputs(snapshot)
    enriched = score_snapshot(snapshot, inputs, churn, upsell, top_reasons, portfolio_settings)
    answers = {
        str(row["account_id"]): answer_bytes(row, "snapshot")
        for row in enriched[[c for c in ANSWER_FIELDS if c in enriched.columns]].to_dict("records")
    }
    allocation = plan_allocation(enriched, inputs.account_managers, portfolio_settings)
    state = ScoringState(
        key=key,
        churn=churn,
        upsell=upsell,
        snapshot=snapshot,
        answers=answers,
        portfolio=None,
        rules=rules,
        top_reasons=top_reasons,
        reference=fit_reference(enriched, portfolio_settings),
        enriched=enriched,
        inputs=inputs,
        allocation=allocation,
    )
    return dataclasses.replace(state, portfolio=portfolio_summary_bytes(state, {}))


def portfolio_summary_bytes(state: ScoringState, filters: Mapping[str, str]) -> bytes:
    """`build_portfolio_summary` (the nightly job's function) over the state's scores."""
    snapshot, inputs = state.snapshot, state.inputs
    if snapshot is None or inputs is None or state.enriched is None:
        raise ApiError(409, "no_snapshot", "no nightly run is loaded")
    for name, value in filters.items():
        column = state.enriched.get(name)
        if column is None or not (column.astype("string") == value).any():
            known = [] if column is None else sorted(column.dropna().astype(str).unique())[:20]
            raise validation_error(
                [name], f"no account has {name} {value!r}; known values: {known}", "unknown_value"
            )
    summary = build_portfolio_summary(
        state.enriched,
        inputs.accounts,
        inputs.arr_history,
        inputs.opportunities,
        inputs.account_managers,
        snapshot.as_of,
        state.portfolio_settings,
        previous_scores=inputs.previous_scores,
        filters=dict(filters) or None,
        current_features=snapshot.features if inputs.previous_scores is not None else None,
        previous_features=inputs.previous_features,
        allocation=state.allocation,
    )
    return json.dumps(json_ready(summary), allow_nan=False).encode("utf-8")


def score_live(
    state: ScoringState, account_ids: Sequence[str], records: Sequence[Mapping[str, Any]]
) -> list[bytes]:
    """Answers for what-if records: scored now, enriched against the snapshot."""
    as_of = state.snapshot.as_of_text if state.snapshot is not None else None
    rows = [
        {**record, "account_id": account_id}
        for account_id, record in zip(account_ids, records, strict=True)
    ]
    scored = score_records(rows, state.churn, state.upsell, top_k=state.top_reasons)
    answers = []
    for result, record in zip(scored, records, strict=True):
        enriched = enrich_record(result, state.reference, account_context(record))
        enriched["as_of"] = as_of
        answers.append(answer_bytes(enriched, "features"))
    return answers


def account_context(record: Mapping[str, Any]) -> dict[str, Any]:
    """The portfolio context a what-if record gives (attributes and enrichment features)."""
    context = {name: record[name] for name in ("segment", "industry", "region") if name in record}
    for column, feature in ENRICHMENT_FEATURES.items():
        if feature in record:
            context[column] = record[feature]
    return context


def warm_up(state: ScoringState) -> None:
    """Score one record through the live path (and check the answer) before serving."""
    if state.snapshot is not None and state.snapshot.records:
        account_id, record = next(iter(state.snapshot.records.items()))
    else:
        account_id, record = "warm-up", {name: None for name in state.rules.model_features}
        record["arr"] = 1.0
    answer = json.loads(score_live(state, [account_id], [dict(record)])[0])
    for name in ("p_churn", "p_upsell"):
        if not 0.0 <= answer[name] <= 1.0:
            raise ValueError(f"warm-up gave {name} = {answer[name]}: the model is unusable")


# --------------------------------------------------------------------------- champions


class RegistryChampions:
    """Champions from the MLflow registry (`models:/<name>@champion`)."""

    def versions(self) -> tuple[str, str]:
        from training.registry import champion_version
        from training.tracking import registered_model_name, tracking_uri

        versions = tuple(champion_version(target) for target in TARGETS)
        missing = [
            registered_model_name(t) for t, v in zip(TARGETS, versions, strict=True) if v is None
        ]
        if missing:
            raise LookupError(
                f"no @champion for {', '.join(missing)} in {redact_credentials(tracking_uri())}: "
                "train the models "
                "(portfolio train) or promote a version (portfolio promote)"
            )
        return versions[0], versions[1]  # type: ignore[return-value]

    def load(self, target: str, version: str) -> Any:
        from training.registry import load_version

        return load_version(target, version)


class BundledChampions:
    """Champions packaged in the bento (see `serving.packaging`)."""

    def versions(self) -> tuple[str, str]:
        from serving.packaging import bundled_version

        return bundled_version("churn"), bundled_version("upsell")

    def load(self, target: str, version: str) -> Any:
        from serving.packaging import load_bundled_champion

        champion = load_bundled_champion(target)
        if champion.version != version:
            raise LookupError(
                f"the bundled {target} model is version {champion.version}, expected {version}"
            )
        return champion


# --------------------------------------------------------------------------- the source


class SnapshotStateSource:
    """States built from the champions and the latest (or a fixed) nightly run folder."""

    def __init__(
        self,
        settings: ServiceSettings,
        champions: RegistryChampions | BundledChampions,
        portfolio_settings: Any = None,
    ) -> None:
        from serving.settings import PortfolioSettings

        self._settings = settings
        self._champions = champions
        self._portfolio_settings = portfolio_settings or PortfolioSettings()

    def current_key(self) -> StateKey:
        churn_version, upsell_version = self._champions.versions()
        folder = resolve_snapshot_dir(self._settings)
        if folder is not None and not (folder / MANIFEST_FILE).is_file():
            raise FileNotFoundError(f"the snapshot {folder} has no {MANIFEST_FILE}")
        return StateKey(
            churn_version,
            upsell_version,
            snapshot_fingerprint(folder) if folder is not None else None,
        )

    def load(self, key: Hashable, previous: ScoringState | None) -> ScoringState:
        assert isinstance(key, StateKey)
        champions = {}
        for target, version in (("churn", key.churn_version), ("upsell", key.upsell_version)):
            kept = getattr(previous, target, None)
            champions[target] = (
                kept
                if kept is not None and str(kept.version) == version
                else self._champions.load(target, version)
            )
        snapshot = None
        if key.snapshot is not None:
            kept_snapshot = previous.snapshot if previous is not None else None
            if kept_snapshot is not None and kept_snapshot.fingerprint == key.snapshot:
                snapshot = kept_snapshot
            else:
                snapshot = read_snapshot(Path(key.snapshot.rsplit("@", 1)[0]))
        state = build_state(
            champions["churn"],
            champions["upsell"],
            snapshot,
            self._settings.top_reasons,
            self._portfolio_settings,
        )
        warm_up(state)
        return state


def build_runtime(
    settings: ServiceSettings, in_bento: bool = False
) -> ScoringRuntime[ScoringState]:
    """The runtime for `settings` (not started); packaged champions when running from a bento
    unless `PORTFOLIO_MODEL_SOURCE` says otherwise."""
    source = settings.model_source or ("bento" if in_bento else "registry")
    champions = BundledChampions() if source == "bento" else RegistryChampions()
    return ScoringRuntime(
        SnapshotStateSource(settings, champions),
        reload_seconds=settings.reload_seconds,
        retry_seconds=settings.retry_seconds,
    )
