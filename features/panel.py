"""The training panel: feature snapshots at several as-of dates, each with its labels.

A snapshot at t holds the accounts active at t, their features from rows
dated up to t and their labels over (t, t + h]. A snapshot whose label window
is not fully observed in the data is never included.

The snapshots run one after the other on one DuckDB connection. Computing
them in one query (joining the rows to a table of as-of dates by range) was
measured slower and far heavier in memory, because every row is repeated for
every snapshot whose windows it falls in (docs/benchmarks.md, "Features").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from features.build import (
    FEATURE_META_COLUMNS,
    AsOf,
    FeatureError,
    FeatureSession,
    as_of_day,
    data_period,
    feature_frame_schema,
)
from features.contract import Tables
from features.labels import (
    DEFAULT_GROWTH_THRESHOLD,
    DEFAULT_HORIZON_DAYS,
    LABEL_COLUMNS,
    LabelSettings,
    session_labels,
    window_observed,
)

logger = logging.getLogger(__name__)

# Snapshots start once the data holds this much history.
DEFAULT_MIN_HISTORY_DAYS = 90


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a feature frame or panel (not account_id, as_of or the labels)."""
    excluded = set(FEATURE_META_COLUMNS) | set(LABEL_COLUMNS)
    return [column for column in frame.columns if column not in excluded]


def default_snapshot_dates(
    tables: Tables,
    as_of: AsOf | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    freq: str = "MS",
    min_history_days: int = DEFAULT_MIN_HISTORY_DAYS,
) -> list[pd.Timestamp]:
    """As-of dates every `freq` (month starts by default) whose label window ends by `as_of`.

    They start `min_history_days` after every given table has data (so that
    no family is missing merely because its table starts later) and end
    `horizon_days` before `as_of` (default: the last date in the data; a
    later `as_of` is capped to it, since windows after the data are not
    observed).
    """
    period = data_period(tables)
    end = period.last_day if as_of is None else min(as_of_day(as_of), period.last_day)
    first = period.covered_from + pd.Timedelta(days=min_history_days)
    last = end - pd.Timedelta(days=horizon_days)
    if last < first:
        return []
    return [pd.Timestamp(day).as_unit("ns") for day in pd.date_range(first, last, freq=freq)]


def build_training_panel(
    tables: Tables,
    as_of_dates: Iterable[AsOf],
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    growth_threshold: float = DEFAULT_GROWTH_THRESHOLD,
) -> pd.DataFrame:
    """Snapshots stacked: account_id, as_of, the features, churn, upsell.

    Snapshots whose label window (as_of + horizon_days) is not fully observed
    are skipped (and logged). Rows are ordered by as_of, then account_id.
    """
    settings = LabelSettings(horizon_days, growth_threshold)
    days = sorted({as_of_day(day) for day in as_of_dates})
    frames: list[pd.DataFrame] = []
    with FeatureSession(tables) as session:
        skipped = [day for day in days if not window_observed(session.period, day, horizon_days)]
        if skipped:
            logger.info(
                "skipping %d snapshot(s) whose %d-day label window ends after the data (%s): %s",
                len(skipped),
                horizon_days,
                session.period.last_day.date(),
                ", ".join(str(day.date()) for day in skipped),
            )
        for day in days:
            if day in skipped:
                continue
            features = session.account_features(day)
            labels = session_labels(session, day, settings)
            snapshot = features.merge(labels, on=list(FEATURE_META_COLUMNS), how="left")
            if snapshot[list(LABEL_COLUMNS)].isna().any().any():
                raise FeatureError(
                    f"labels at {day.date()} do not cover every active account "
                    "(the feature and label definitions of ARR disagree)"
                )
            frames.append(snapshot)
        schema = {
            **feature_frame_schema(session.features),
            **dict.fromkeys(LABEL_COLUMNS, "int64"),
        }
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in schema.items()})
    return pd.concat(frames, ignore_index=True).astype(schema)


__all__ = [
    "DEFAULT_MIN_HISTORY_DAYS",
    "build_training_panel",
    "default_snapshot_dates",
    "feature_columns",
]
