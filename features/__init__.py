"""Data contract, loading, validation, synthetic portfolio, point-in-time features and labels."""

from features.build import (
    FEATURE_META_COLUMNS,
    FeatureError,
    arr_at,
    build_account_features,
    data_period,
    source_row_counts,
)
from features.definitions import (
    FEATURE_SET_NAME,
    FEATURE_SET_VERSION,
    FEATURES,
    FeatureSpec,
    feature_specs,
)
from features.labels import LABEL_COLUMNS, build_labels, label_window_observed
from features.panel import build_training_panel, default_snapshot_dates, feature_columns

__all__ = [
    "FEATURES",
    "FEATURE_META_COLUMNS",
    "FEATURE_SET_NAME",
    "FEATURE_SET_VERSION",
    "LABEL_COLUMNS",
    "FeatureError",
    "FeatureSpec",
    "arr_at",
    "build_account_features",
    "build_labels",
    "build_training_panel",
    "data_period",
    "default_snapshot_dates",
    "feature_columns",
    "feature_specs",
    "label_window_observed",
    "source_row_counts",
]
