"""Session-wide fixtures shared by several test modules (keep each one small and cheap).

- `nightly_sources`: a small generated SaaS portfolio (300 accounts, 24 months,
  seed 1) written as Parquet with its `sources.yaml`.
- `champion_store`: churn and upsell models trained quickly on it (a few
  Optuna trials) into a temporary MLflow store, promoted to `@champion`;
  `MLFLOW_TRACKING_URI` points at that store for the rest of the session.
- `nightly_run_dir`: one nightly run folder of that portfolio with those champions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _mlflow_process_uris_restored() -> Iterator[None]:
    """MLflow keeps the tracking and registry URIs set by `mlflow.set_tracking_uri` (which
    training calls) in module globals; a test that points them at a server it then stops
    must not leave later tests talking to that dead address."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    yield
    tracking_utils._tracking_uri, registry_utils._registry_uri = saved


@pytest.fixture(scope="session")
def nightly_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio

    portfolio = generate_portfolio(GeneratorSettings(n_accounts=300, months=24, seed=1))
    return write_portfolio(portfolio, tmp_path_factory.mktemp("nightly-portfolio"))


@pytest.fixture(scope="session")
def champion_store(
    nightly_sources: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from features.sources import load_sources
    from training.pipeline import TrainingSettings, train_from_sources
    from training.tuning import TuningSettings

    store = tmp_path_factory.mktemp("mlflow-store")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    # mlflow.set_tracking_uri / set_registry_uri (called while training) also write these
    # variables, so both are saved and restored.
    saved = {name: os.environ.get(name) for name in MLFLOW_VARIABLES}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    try:
        tables = load_sources(nightly_sources).tables
        settings = TrainingSettings(
            tuning=TuningSettings(n_trials=2, timeout_seconds=30, max_rounds=200),
            tracking_uri=uri,
        )
        result = train_from_sources(tables, target="all", settings=settings)
        assert all(r.promoted for r in result.targets.values()), "the first models must be promoted"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        yield uri
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def nightly_run_dir(
    nightly_sources: Path, champion_store: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from serving.batch import run_nightly_job

    result = run_nightly_job(nightly_sources, out_dir=tmp_path_factory.mktemp("runs") / "latest")
    return result.out_dir
