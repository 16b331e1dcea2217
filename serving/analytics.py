"""Portfolio metrics: ARR at risk and its band, concentration, coverage, NRR, pipeline velocity.

Pure functions over the checked scores (`serving.portfolio_inputs.check_scores`) and the
contract tables. Definitions are in docs/portfolio-metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from serving.portfolio_inputs import PortfolioInputError, group_labels
from serving.settings import MetricSettings, PortfolioSettings, ValueSettings

BREAKDOWN_DIMENSIONS: tuple[str, ...] = ("segment", "industry", "region", "owner_id")
_BAND_EVENTS_PER_BLOCK = 4_000_000
# geometric gaps drawn per account: the expected churns + this many standard deviations +
# this many more (an account whose gaps run out before the last draw gets more)
_GAPS_MARGIN_SD = 4.0
_GAPS_MARGIN = 8.0


def expected_arr_at_risk(scores: pd.DataFrame) -> pd.Series:
    """p_churn x arr per account."""
    return (scores["p_churn"] * scores["arr"]).rename("expected_arr_at_risk")


def expansion_amount(scores: pd.DataFrame, settings: ValueSettings) -> pd.Series:
    """What an account adds when it expands: max(open expansion pipeline, fraction x arr).

    The open expansion pipeline is what sales already has in play for the account; when
    it is unknown or smaller, the expansion is taken as `expansion_fraction_of_arr` x arr.
    """
    by_arr = scores["arr"] * settings.expansion_fraction_of_arr
    if "open_expansion_pipeline" in scores.columns:
        pipeline = pd.to_numeric(scores["open_expansion_pipeline"]).fillna(0.0).clip(lower=0.0)
        by_arr = np.maximum(by_arr, pipeline)
    return pd.Series(by_arr, index=scores.index, dtype="float64", name="expansion_amount")


def expected_expansion(scores: pd.DataFrame, settings: ValueSettings) -> pd.Series:
    """p_upsell x expansion amount per account."""
    return (scores["p_upsell"] * expansion_amount(scores, settings)).rename("expected_expansion")


def _rounded(value: float) -> float:
    return float(round(value, 9))


def band_draws(accounts: int, settings: MetricSettings) -> int:
    """Monte Carlo draws for `accounts` accounts: `band_draws`, fewer when draws x accounts
    would exceed `band_max_cells`, never fewer than `band_min_draws`."""
    if accounts <= 0:
        return settings.band_draws
    capped = settings.band_max_cells // accounts
    return max(min(settings.band_draws, capped), min(settings.band_min_draws, settings.band_draws))


def arr_lost_bands(
    scores: pd.DataFrame,
    settings: MetricSettings,
    dimensions: tuple[str, ...] = (),
) -> dict[str | None, pd.DataFrame]:
    """Quantiles of ARR lost over the horizon, overall (key None) and per group of each dimension.

    Each account churns independently with probability p_churn and then loses its whole
    ARR. The distribution of the sum is simulated with `band_draws(n)` Monte Carlo draws
    from a generator seeded with `band_seed`; accounts are ordered by account_id first so the
    result does not depend on row order. Group bands use the first `group_band_draws`
    draws of the same simulation. Quantiles use the inverted CDF, so every reported value
    is an amount the simulation produced. Returns frames indexed by group ("all" for the
    overall band) with one column per quantile (p10, p50, p90).

    The simulation draws only the churns (`_churn_events`), so its cost grows with
    draws x sum(p_churn) rather than draws x accounts.
    """
    names = [f"p{round(q * 100):d}" for q in settings.band_quantiles]
    quantiles = list(settings.band_quantiles)
    order = np.argsort(scores["account_id"].astype(str).to_numpy(), kind="stable")
    p = scores["p_churn"].to_numpy(dtype="float64")[order]
    arr = scores["arr"].to_numpy(dtype="float64")[order]
    n = len(p)
    codes: dict[str, tuple[np.ndarray, list[str]]] = {}
    for dimension in dimensions:
        labels = group_labels(scores[dimension], settings.unknown_label).to_numpy()[order]
        uniques, inverse = np.unique(labels.astype(str), return_inverse=True)
        codes[dimension] = (inverse, [str(u) for u in uniques])
    total_draws = band_draws(n, settings)
    group_draws = min(settings.group_band_draws, total_draws)
    totals = np.zeros(total_draws)
    grouped = {d: np.zeros(group_draws * len(u)) for d, (_, u) in codes.items()}
    rng = np.random.default_rng(settings.band_seed)
    for account, draw in _churn_events(np.where(arr > 0, p, 0.0), total_draws, rng):
        lost = arr[account]
        totals += np.bincount(draw, weights=lost, minlength=total_draws)
        early = draw < group_draws
        for dimension, (inverse, uniques) in codes.items():
            cell = draw[early] * len(uniques) + inverse[account[early]]
            grouped[dimension] += np.bincount(
                cell, weights=lost[early], minlength=group_draws * len(uniques)
            )
    result: dict[str | None, pd.DataFrame] = {
        None: pd.DataFrame(
            [np.quantile(totals, quantiles, method="inverted_cdf")], columns=names, index=["all"]
        )
    }
    for dimension, (_, uniques) in codes.items():
        values = (
            np.quantile(
                grouped[dimension].reshape(group_draws, len(uniques)),
                quantiles,
                axis=0,
                method="inverted_cdf",
            ).T
            if uniques
            else np.zeros((0, len(names)))
        )
        result[dimension] = pd.DataFrame(values, columns=names, index=pd.Index(uniques))
    return result


def _churn_events(
    p: np.ndarray, draws: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(account, draw) of every churn in `draws` independent draws in which account i churns
    with probability p[i], by blocks of accounts of about `_BAND_EVENTS_PER_BLOCK` churns.

    Exact, not an approximation: the draws in which an account churns form a Bernoulli
    process, generated from its geometric gaps (draws until the next churn); an account
    whose gaps run out before the last draw gets more.
    """
    candidates = np.nonzero(p > 0)[0]
    expected = np.cumsum(p[candidates] * draws + 1.0)
    block = (
        np.searchsorted(
            expected,
            np.arange(1, 1 + int(expected[-1] // _BAND_EVENTS_PER_BLOCK)) * _BAND_EVENTS_PER_BLOCK,
        )
        if len(candidates)
        else np.zeros(0, dtype=int)
    )
    for accounts in np.split(candidates, block):
        if not len(accounts):
            continue
        found: list[tuple[np.ndarray, np.ndarray]] = []
        position = np.full(len(accounts), -1, dtype=np.int64)  # the last churn drawn
        active = np.arange(len(accounts))
        while len(active):
            q = p[accounts[active]]
            mean = (draws - 1 - position[active]) * q
            spread = _GAPS_MARGIN_SD * np.sqrt(mean * (1.0 - q))
            count = np.maximum(np.ceil(mean + spread + _GAPS_MARGIN), 1).astype(np.int64)
            member = np.repeat(active, count)
            gaps = np.minimum(rng.geometric(np.repeat(q, count)), draws + 1)
            ends = np.cumsum(count)
            running = np.cumsum(gaps)
            offset = running[ends - count] - gaps[ends - count] - position[active]
            churn = running - np.repeat(offset, count)
            inside = churn < draws
            found.append((accounts[member[inside]], churn[inside]))
            position[active] = churn[ends - 1]
            active = active[churn[ends - 1] < draws]
        yield (
            np.concatenate([a for a, _ in found]),
            np.concatenate([d for _, d in found]),
        )


def parent_of(scores: pd.DataFrame, accounts: pd.DataFrame | None) -> pd.Series:
    """Top-level parent of every scored account (itself when it has no parent).

    Parent links come from the accounts table and, for accounts it does not list, from the
    scores. Chains are followed to the top; a parent that is not listed is itself the top.
    A cycle raises naming the accounts on it.
    """
    links = scores.set_index("account_id")["parent_account_id"]
    if accounts is not None and "parent_account_id" in accounts.columns:
        listed = accounts.set_index("account_id")["parent_account_id"].astype("string")
        links = pd.concat([listed, links[~_isin(links.index, listed.index)]])
    links = links.dropna()
    links = links[links != links.index.to_series()]
    # Every id as a code (Arrow's dictionary encoding); each code's parent, itself at a top.
    # Pointer doubling (top = top[top]) reaches every top in log2(depth) steps; a chain
    # that runs into a cycle never reaches one.
    ids = pd.concat(
        [
            scores["account_id"].astype("str"),
            links.index.to_series().astype("str"),
            links.astype("str"),
        ],
        ignore_index=True,
    )
    codes, uniques = pd.factorize(ids)
    n_scores, n_links = len(scores), len(links)
    parent = np.arange(len(uniques))
    parent[codes[n_scores : n_scores + n_links]] = codes[n_scores + n_links :]
    top = parent.copy()
    for _ in range(max(1, int(np.ceil(np.log2(max(len(uniques), 2))))) + 1):
        higher = top[top]
        if np.array_equal(higher, top):
            break
        top = higher
    scored = codes[:n_scores]
    stuck = parent[top[scored]] != top[scored]  # a top is its own parent; a cycle has none
    if stuck.any():
        node = int(scored[np.argmax(stuck)])
        seen = {node: 0}
        path = [node]
        while int(parent[node]) not in seen:
            node = int(parent[node])
            seen[node] = len(path)
            path.append(node)
        cycle = path[seen[int(parent[node])] :]
        raise PortfolioInputError(
            "accounts: parent_account_id forms a cycle through "
            f"{sorted(str(uniques[c]) for c in cycle)}"
        )
    return pd.Series(
        np.asarray(uniques.take(top[scored])), index=scores.index, name="parent", dtype="str"
    )


def _isin(values: pd.Series | pd.Index, candidates: pd.Series | pd.Index | list[str]) -> np.ndarray:
    """values.isin(candidates) for ids (bool array), by Arrow's hash lookup on the Arrow
    strings: pandas' Arrow-string `isin` converts every candidate in a Python loop, and
    object arrays convert every id (both seconds at 1,000,000 ids)."""
    return (
        pc.is_in(_arrow_texts(values), value_set=_arrow_texts(candidates))
        .fill_null(False)
        .to_numpy(zero_copy_only=False)
    )


def _arrow_texts(values: pd.Series | pd.Index | list[str]) -> pa.Array:
    """Ids as an Arrow string array (no copy for a column of pandas' Arrow-backed `str`)."""
    texts = pd.array(values, dtype="str") if isinstance(values, list) else values.astype("str")
    return pa.array(texts.array if hasattr(texts, "array") else texts, type=pa.large_string())


@dataclass(frozen=True)
class Concentration:
    """Revenue concentration with children rolled up to their top-level parent."""

    top_n: int
    top_share: float | None
    top_parents: list[str]
    herfindahl: float | None
    largest_industry: str | None
    largest_industry_share: float | None


def concentration(
    scores: pd.DataFrame, accounts: pd.DataFrame | None, settings: MetricSettings
) -> Concentration:
    """Top-N share of ARR (parents rolled up), Herfindahl index of parent shares, largest industry.

    Shares are of total ARR; with zero total ARR every share is None.
    """
    total = float(scores["arr"].sum())
    if total <= 0:
        return Concentration(settings.concentration_top_n, None, [], None, None, None)
    by_parent = scores["arr"].groupby(parent_of(scores, accounts)).sum()
    by_parent = by_parent[by_parent > 0]
    ranked = by_parent.reset_index().sort_values(["arr", "parent"], ascending=[False, True])
    top = ranked.head(settings.concentration_top_n)
    shares = ranked["arr"] / total
    industries = (
        scores["arr"].groupby(group_labels(scores["industry"], settings.unknown_label)).sum()
        / total
    )
    industries = industries.sort_index().sort_values(ascending=False, kind="stable")
    return Concentration(
        top_n=settings.concentration_top_n,
        top_share=_rounded(float(top["arr"].sum()) / total),
        top_parents=[str(v) for v in top["parent"]],
        herfindahl=_rounded(float((shares**2).sum())),
        largest_industry=str(industries.index[0]),
        largest_industry_share=_rounded(float(industries.iloc[0])),
    )


def target_status(
    scores: pd.DataFrame, accounts: pd.DataFrame | None, settings: MetricSettings
) -> pd.DataFrame:
    """One row per known account: account_id, segment, target (is_target), active (scored
    with arr > 0). Targets and segments come from the accounts table, and from the scores'
    own attributes for accounts the table does not list. Empty when nothing says is_target."""
    attributes = scores[["account_id", "segment", "is_target"]]
    if accounts is not None:
        listed = accounts[["account_id", "segment", "is_target"]]
        attributes = pd.concat(
            [listed, attributes[~_isin(attributes["account_id"], listed["account_id"])]]
        )
    if attributes["is_target"].notna().sum() == 0:
        return pd.DataFrame(columns=["account_id", "segment", "target", "active"])
    ids = attributes["account_id"].astype(str)
    return pd.DataFrame(
        {
            "account_id": ids.to_numpy(),
            "segment": group_labels(attributes["segment"], settings.unknown_label).to_numpy(),
            "target": attributes["is_target"].fillna(False).astype(bool).to_numpy(),
            "active": _isin(ids, scores.loc[scores["arr"] > 0, "account_id"]),
        }
    )


def coverage_by_segment(status: pd.DataFrame) -> pd.DataFrame:
    """Per segment: target accounts, active accounts, active targets, and coverage.

    `status` is `target_status(...)`. coverage = active target accounts / target
    accounts (None when a segment has no targets; 0 when it has targets but none is
    active). Active = scored with arr > 0. Empty frame when no account says is_target.
    """
    columns = ["target_accounts", "active_accounts", "active_target_accounts", "coverage"]
    if status.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="segment"))
    status = status.assign(active_target=status["target"] & status["active"])
    counts = status.groupby("segment")[["target", "active", "active_target"]].sum().astype(int)
    counts.columns = columns[:3]
    counts["coverage"] = pd.Series(
        [
            _rounded(hit / target) if target > 0 else None
            for hit, target in zip(
                counts["active_target_accounts"], counts["target_accounts"], strict=True
            )
        ],
        index=counts.index,
        dtype=object,
    )
    return counts.sort_index()


def uncovered_targets(status: pd.DataFrame) -> dict[str, list[str]]:
    """Per segment, the target accounts that are not active customers (sorted ids);
    `status` is `target_status(...)`."""
    missing = status[status["target"] & ~status["active"]] if not status.empty else status
    return {
        str(segment): sorted(group["account_id"].astype(str))
        for segment, group in missing.groupby("segment")
    }


@dataclass(frozen=True)
class RealisedNrr:
    """Net revenue retention over the last 12 months, from ARR 12 months ago and now."""

    nrr: float | None
    accounts_at_start: int
    arr_start: float
    expansion: float
    contraction: float
    churn: float


def realised_nrr(arr_history: pd.DataFrame | None) -> RealisedNrr | None:
    """(start + expansion - contraction - churn) / start over accounts with arr_start > 0.

    expansion = sum of increases, contraction = sum of decreases of accounts still paying,
    churn = arr_start of accounts at 0 now. New accounts (arr_start = 0) are not in NRR.
    None when no history is given; nrr None when nobody paid 12 months ago.
    """
    if arr_history is None:
        return None
    base = arr_history[arr_history["arr_start"] > 0]
    change = base["arr_end"] - base["arr_start"]
    kept = base["arr_end"] > 0
    start = float(base["arr_start"].sum())
    expansion = float(change[kept].clip(lower=0).sum())
    contraction = float((-change[kept]).clip(lower=0).sum())
    churn = float(base.loc[~kept, "arr_start"].sum())
    nrr = _rounded((start + expansion - contraction - churn) / start) if start > 0 else None
    return RealisedNrr(
        nrr=nrr,
        accounts_at_start=len(base),
        arr_start=_rounded(start),
        expansion=_rounded(expansion),
        contraction=_rounded(contraction),
        churn=_rounded(churn),
    )


@dataclass(frozen=True)
class ForecastNrr:
    """Expected net revenue retention over the horizon, from the scores."""

    nrr: float | None
    horizon_days: int
    arr: float
    expected_churn: float
    expected_expansion: float


def forecast_nrr(scores: pd.DataFrame, settings: PortfolioSettings) -> ForecastNrr:
    """(ARR - sum p_churn x arr + sum expected_expansion) / ARR over the horizon.

    = 1 - weighted churn share + expected expansion share. Contraction short of churn is
    not modelled (the models predict churn and expansion only). None when ARR is 0.
    """
    arr = float(scores["arr"].sum())
    churn = float(expected_arr_at_risk(scores).sum())
    expansion = float(expected_expansion(scores, settings.value).sum())
    nrr = _rounded((arr - churn + expansion) / arr) if arr > 0 else None
    return ForecastNrr(
        nrr=nrr,
        horizon_days=settings.metrics.horizon_days,
        arr=_rounded(arr),
        expected_churn=_rounded(churn),
        expected_expansion=_rounded(expansion),
    )


@dataclass(frozen=True)
class PipelineVelocity:
    """Qualified opportunities per period x win rate, by count and by amount."""

    velocity: float | None
    amount_velocity: float | None
    reason: str | None
    window_days: int
    period_days: int
    qualified_opportunities: int = 0
    opportunities_per_period: float | None = None
    win_rate: float | None = None
    qualified_amount_per_period: float | None = None
    amount_win_rate: float | None = None
    won: int = 0
    lost: int = 0
    average_cycle_days: float | None = None


def pipeline_velocity(
    opportunities: pd.DataFrame | None, as_of: pd.Timestamp, settings: MetricSettings
) -> PipelineVelocity:
    """Pipeline velocity over the `velocity_window_days` up to as_of.

    Qualified = opportunities created in (as_of - window, as_of] whose kind is one of
    `velocity_kinds` (or has no kind); the contract has no qualification stage, so every
    such opportunity counts. Win rate = won / (won + lost) among qualified-kind
    opportunities closed in the window (closed_at <= as_of, or created_at when closed_at is
    empty). velocity = qualified per period x win rate (expected wins per period);
    amount_velocity = qualified amount per period x won amount / closed amount. Null with a
    reason when there are no opportunities or nothing closed.
    """
    window, period = settings.velocity_window_days, settings.velocity_period_days
    if opportunities is None:
        return PipelineVelocity(None, None, "no opportunities table", window, period)
    start = as_of - pd.Timedelta(days=window)
    frame = opportunities
    kind = (
        frame["kind"].astype("string").str.strip().str.lower()
        if "kind" in frame.columns
        else pd.Series(pd.NA, index=frame.index, dtype="string")
    )
    frame = frame[kind.isna() | kind.isin(settings.velocity_kinds)]
    created = pd.to_datetime(frame["created_at"])
    closed = (
        pd.to_datetime(frame["closed_at"])
        if "closed_at" in frame.columns
        else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    ).fillna(created)
    stage = (
        frame["stage"].astype("string").str.strip().str.lower()
        if "stage" in frame.columns
        else pd.Series(pd.NA, index=frame.index, dtype="string")
    )
    amount = (
        pd.to_numeric(frame["amount"]).astype("float64")
        if "amount" in frame.columns
        else pd.Series(np.nan, index=frame.index)
    )
    qualified = (created > start) & (created <= as_of)
    closed_in_window = (closed > start) & (closed <= as_of) & (created <= as_of)
    won = closed_in_window & (stage == "won").fillna(False)
    lost = closed_in_window & (stage == "lost").fillna(False)
    n_qualified, n_won, n_lost = int(qualified.sum()), int(won.sum()), int(lost.sum())
    if n_qualified == 0:
        return PipelineVelocity(
            None, None, "no qualified opportunity in the window", window, period
        )
    periods = window / period
    per_period = n_qualified / periods
    win_rate = n_won / (n_won + n_lost) if n_won + n_lost else None
    amount_per_period = float(amount[qualified].fillna(0.0).sum()) / periods
    closed_amount = float(amount[won | lost].fillna(0.0).sum())
    amount_win_rate = (
        float(amount[won].fillna(0.0).sum()) / closed_amount if closed_amount else None
    )
    cycle = (closed[won] - created[won]).dt.days
    return PipelineVelocity(
        velocity=_rounded(per_period * win_rate) if win_rate is not None else None,
        amount_velocity=(
            _rounded(amount_per_period * amount_win_rate) if amount_win_rate is not None else None
        ),
        reason=None if win_rate is not None else "no opportunity closed won or lost in the window",
        window_days=window,
        period_days=period,
        qualified_opportunities=n_qualified,
        opportunities_per_period=_rounded(per_period),
        win_rate=_rounded(win_rate) if win_rate is not None else None,
        qualified_amount_per_period=_rounded(amount_per_period),
        amount_win_rate=_rounded(amount_win_rate) if amount_win_rate is not None else None,
        won=n_won,
        lost=n_lost,
        average_cycle_days=_rounded(float(cycle.mean())) if len(cycle) else None,
    )


def metrics_by(
    scores: pd.DataFrame,
    dimension: str,
    bands: pd.DataFrame,
    settings: MetricSettings,
) -> pd.DataFrame:
    """Per group of `dimension`: accounts, arr, arr_share, weighted churn risk and share,
    the ARR-lost band, expected expansion and the forecast NRR. `scores` must hold
    expected_arr_at_risk and expected_expansion; `bands` comes from `arr_lost_bands`."""
    total = float(scores["arr"].sum())
    labels = group_labels(scores[dimension], settings.unknown_label)
    grouped = scores.groupby(labels.rename(dimension))
    frame = pd.DataFrame(
        {
            "accounts": grouped.size(),
            "arr": grouped["arr"].sum(),
            "weighted_churn_risk": grouped["expected_arr_at_risk"].sum(),
            "expected_expansion": grouped["expected_expansion"].sum(),
        }
    )
    frame["arr_share"] = frame["arr"] / total if total > 0 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["weighted_churn_share"] = np.where(
            frame["arr"] > 0, frame["weighted_churn_risk"] / frame["arr"], np.nan
        )
        frame["nrr_forecast"] = np.where(
            frame["arr"] > 0,
            (frame["arr"] - frame["weighted_churn_risk"] + frame["expected_expansion"])
            / frame["arr"],
            np.nan,
        )
    frame.index = frame.index.astype(str)
    frame = frame.join(bands, how="left")
    return frame.sort_index()
