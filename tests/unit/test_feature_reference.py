"""The feature build equals a frozen reference of feature values on small generated portfolios.

`tests/unit/data/feature_reference_{kind}.csv` holds the features that
`build_account_features` computed, before any speed work on the local
engine, for a 150-account SaaS portfolio and a 150-account orders portfolio
(`REFERENCE_SETTINGS`) at three as-of dates each. A change to how the local
engine runs the definitions (threads, fetching, ordering, staging) must not
change a value; a deliberate change of a definition regenerates the file
(`uv run python -m tests.unit.test_feature_reference`) and bumps
`FEATURE_SET_VERSION`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import FEATURES, build_account_features, data_period
from features.contract import Tables
from features.synthetic import GeneratorSettings, generate_portfolio

DATA = Path(__file__).resolve().parent / "data"
KINDS = ("saas", "orders")
# As-of dates: this many days before the last day of the data.
DAYS_BEFORE_END = (0, 150, 300)


def reference_settings(kind: str) -> GeneratorSettings:
    return GeneratorSettings(n_accounts=150, months=24, seed=11, kind=kind)


def reference_tables(kind: str) -> Tables:
    tables = generate_portfolio(reference_settings(kind)).tables
    return {name: frame for name, frame in tables.items() if name != "account_managers"}


def reference_dates(tables: Tables) -> list[pd.Timestamp]:
    last = data_period(tables).last_day
    return [last - pd.Timedelta(days=days) for days in DAYS_BEFORE_END]


def built_features(kind: str) -> pd.DataFrame:
    tables = reference_tables(kind)
    frames = [build_account_features(tables, day) for day in reference_dates(tables)]
    return pd.concat(frames, ignore_index=True)


def reference_path(kind: str) -> Path:
    return DATA / f"feature_reference_{kind}.csv"


def read_reference(kind: str) -> pd.DataFrame:
    frame = pd.read_csv(reference_path(kind), dtype={"account_id": "str"}, parse_dates=["as_of"])
    categorical = [c for c in frame.columns if c in FEATURES and FEATURES[c].kind == "categorical"]
    return frame.astype(dict.fromkeys(categorical, "str"))


def write_reference(kind: str) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    built_features(kind).to_csv(reference_path(kind), index=False, float_format="%.17g")


@pytest.mark.parametrize("kind", KINDS)
def test_features_equal_the_frozen_reference(kind: str) -> None:
    built = built_features(kind)
    reference = read_reference(kind)
    assert list(built.columns) == list(reference.columns)
    assert len(built) == len(reference) > 0
    assert built["account_id"].tolist() == reference["account_id"].tolist()
    assert (built["as_of"] == reference["as_of"]).all()
    for column in built.columns[2:]:
        ours, frozen = built[column], reference[column]
        if FEATURES[column].kind == "numeric":
            assert built[column].dtype == "float64", column
            same = np.isclose(ours, frozen, rtol=1e-12, atol=1e-12, equal_nan=True)
        else:
            same = (ours.fillna("<NA>") == frozen.fillna("<NA>")).to_numpy()
        assert same.all(), f"{kind} {column}: {int((~same).sum())} values differ"


if __name__ == "__main__":
    for kind in KINDS:
        write_reference(kind)
