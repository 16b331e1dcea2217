"""MLflow tracking: where runs go, and logging one trained model with its evidence.

Default store: a SQLite database under the repository's `models/` folder
(`sqlite:///<repo>/models/mlflow.db`, artifacts in `<repo>/models/artifacts`).
`MLFLOW_TRACKING_URI` overrides it (e.g. `http://127.0.0.1:5000` for a
tracking server). Nothing is configured at import: call `configure_tracking()`.

One experiment per target (`<prefix>portfolio-<target>`), registered models
`<prefix>churn` and `<prefix>upsell` (`PORTFOLIO_MODEL_PREFIX`, default empty).
Each run logs parameters, metrics of the model and of the baselines, the
Optuna study summary, the feature set name and version, plots, a model card,
and the model as an MLflow pyfunc logged from code (`training/pyfunc_model.py`)
whose artifact is `booster.txt` + `model.json`: nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import sklearn
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

from training.model import CalibratedBoostedClassifier
from training.model_card import ModelCard, default_limitations, render_model_card
from training.plots import calibration_figure, gain_figure, importance_figure
from training.tuning import TuningResult

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS: tuple[str, ...] = ("churn", "upsell")
MODEL_ARTIFACT = "calibrated_model"
MODEL_NAME_IN_RUN = "model"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
PREFIX_ENV = "PORTFOLIO_MODEL_PREFIX"

# Metrics copied onto the registered model version as tags (what `portfolio models` shows).
VERSION_METRIC_TAGS: tuple[str, ...] = ("roc_auc", "brier", "ece", "log_loss", "pr_auc")


# ------------------------------------------------------------------ where things go


def default_tracking_uri() -> str:
    return f"sqlite:///{REPO_ROOT / 'models' / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return REPO_ROOT / "models" / "artifacts"


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI in force: `uri`, else `MLFLOW_TRACKING_URI`, else the local store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def registry_uri(uri: str | None = None) -> str:
    """The model registry URI: `MLFLOW_REGISTRY_URI` if set, else the tracking URI."""
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri(uri)


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    return None


def configure_tracking(uri: str | None = None) -> str:
    """Point MLflow's fluent API at the tracking store (creating the local folder); return the URI.

    Only the tracking URI is set (MLflow mirrors it into MLFLOW_TRACKING_URI).
    The registry is always reached through an explicit `client()`, never
    through `mlflow.set_registry_uri`, which would leave MLFLOW_REGISTRY_URI
    behind in the environment and send later registrations to a stale store.
    """
    resolved = tracking_uri(uri)
    database = _sqlite_path(resolved)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(resolved)
    return resolved


def client(uri: str | None = None) -> MlflowClient:
    """An MLflow client on the tracking store in force (no global state touched)."""
    resolved = tracking_uri(uri)
    database = _sqlite_path(resolved)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=resolved, registry_uri=registry_uri(resolved))


def model_prefix(prefix: str | None = None) -> str:
    return prefix if prefix is not None else os.environ.get(PREFIX_ENV, "")


def registered_model_name(target: str, prefix: str | None = None) -> str:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return f"{model_prefix(prefix)}{target}"


def experiment_name(target: str, prefix: str | None = None) -> str:
    return f"{model_prefix(prefix)}portfolio-{target}"


def _artifact_location(uri: str, name: str) -> str | None:
    """Artifacts beside a SQLite store (MLflow would otherwise use ./mlruns in the CWD)."""
    if uri == default_tracking_uri():
        return (default_artifact_root() / name).as_uri()
    database = _sqlite_path(uri)
    if database is not None:
        return (database.parent / "artifacts" / name).as_uri()
    return None  # a tracking server decides where its artifacts go


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """The id of experiment `name`, created if missing."""
    resolved = tracking_uri(uri)
    mlflow_client = client(resolved)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow_client.create_experiment(
        name, artifact_location=_artifact_location(resolved, name)
    )


def _register(mlflow_client: MlflowClient, name: str, source: str, run_id: str, model_id) -> str:
    """A new version of registered model `name` (created if missing) for a logged model."""
    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = mlflow_client.create_model_version(
        name, source=source, run_id=run_id, model_id=model_id
    )
    return str(version.version)


# ------------------------------------------------------------------ what a run holds


@dataclass(frozen=True)
class TrainingRecord:
    """Everything one training run logs."""

    target: str
    model: CalibratedBoostedClassifier
    metrics: Mapping[str, float]
    baselines: Mapping[str, Mapping[str, float] | str]
    evaluation_labels: np.ndarray
    # model and baseline probabilities on the evaluation rows, for the plots
    evaluation_scores: Mapping[str, np.ndarray]
    tuning: TuningResult
    feature_set_name: str
    feature_set_version: str
    design: str  # "time split" or "flat table"
    data: Mapping[str, Any]
    params: Mapping[str, Any]
    input_example: pd.DataFrame
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedVersion:
    run_id: str
    experiment_id: str
    model_uri: str
    name: str
    version: str | None


def model_signature(model: CalibratedBoostedClassifier) -> ModelSignature:
    """Inputs: every feature, optional (absent = missing); output: one probability per row.

    Categorical features are strings. Numeric features are declared `Any`:
    MLflow's "double" would refuse integer columns (it will not cast int64 to
    float64), while the model reads any number; non-numbers are rejected by
    the model itself with a message naming the column.
    """
    inputs = Schema(
        [
            ColSpec("string", name, required=False)
            if name in model.categories_
            else ColSpec(AnyType(), name, required=False)
            for name in model.feature_names_
        ]
    )
    outputs = Schema([TensorSpec(np.dtype("float64"), (-1,))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(
    model: CalibratedBoostedClassifier, X: pd.DataFrame, rows: int = 5
) -> pd.DataFrame:
    """A few rows typed as the signature says (numbers float64, categories object strings)."""
    head = X.head(rows)
    columns = {}
    for name in model.feature_names_:
        if name not in head.columns:
            continue
        if name in model.categories_:
            values = head[name].astype("string")
            columns[name] = values.astype(object).where(values.notna(), None)
        else:
            columns[name] = pd.Series(model.prepare(head[[name]])[:, 0], index=head.index)
    return pd.DataFrame(columns)


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc (the account-portfolio package itself is also needed)."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lgb.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"scikit-learn=={sklearn.__version__}",
    ]


def _flat(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(f"{name}.", value))
        else:
            out[name] = value
    return out


def _finite_metrics(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and math.isfinite(float(v))
    }


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def log_training_run(
    record: TrainingRecord,
    *,
    register: bool = True,
    prefix: str | None = None,
    uri: str | None = None,
) -> LoggedVersion:
    """Log one trained model with its evidence; register it as a new version when asked."""
    resolved = configure_tracking(uri)
    target = record.target
    name = registered_model_name(target, prefix)
    experiment_id = ensure_experiment(experiment_name(target, prefix), resolved)
    model = record.model
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{target}") as run:
        mlflow.set_tags(
            {
                "target": target,
                "design": record.design,
                "feature_set.name": record.feature_set_name,
                "feature_set.version": record.feature_set_version,
                "registered_model": name,
                **record.tags,
            }
        )
        params = {
            **_flat("model.", model.get_params()),
            **_flat("data.", record.data),
            **_flat("", record.params),
            "feature_set.name": record.feature_set_name,
            "feature_set.version": record.feature_set_version,
            "calibration.method": model.calibrator_["method"],
            "n_features": len(model.feature_names_),
        }
        mlflow.log_params({k: _param_value(v) for k, v in params.items()})
        metrics = _finite_metrics("", record.metrics)
        for baseline, values in record.baselines.items():
            if isinstance(values, Mapping):
                metrics.update(_finite_metrics(f"{baseline}.", values))
        metrics.update(
            _finite_metrics(
                "tuning.",
                {
                    "best_value": record.tuning.best_value,
                    "n_trials": record.tuning.n_trials,
                    "n_complete": record.tuning.n_complete,
                    "n_pruned": record.tuning.n_pruned,
                    "duration_seconds": record.tuning.duration_seconds,
                },
            )
        )
        mlflow.log_metrics(metrics)
        mlflow.log_dict(record.tuning.summary(), "tuning/study.json")
        mlflow.log_dict(
            {
                "model": dict(record.metrics),
                "baselines": {k: v for k, v in record.baselines.items()},
            },
            "evaluation/metrics.json",
        )
        mlflow.log_dict(model.calibrator_, "evaluation/calibrator.json")
        title = f"{target} ({record.data.get('evaluation', 'evaluation')})"
        y = np.asarray(record.evaluation_labels)
        mlflow.log_figure(
            calibration_figure(y, record.evaluation_scores, f"Calibration: {title}"),
            "plots/calibration_curve.png",
        )
        mlflow.log_figure(
            gain_figure(y, record.evaluation_scores, f"Cumulative gain: {title}"),
            "plots/cumulative_gain.png",
        )
        mlflow.log_figure(
            importance_figure(model, f"Feature importance: {target}"),
            "plots/feature_importance.png",
        )
        card = ModelCard(
            target=target,
            model_name=name,
            feature_set=f"{record.feature_set_name} {record.feature_set_version}",
            data=record.data,
            metrics=record.metrics,
            baselines=record.baselines,
            tuning=record.tuning.summary(),
            calibration=model.calibrator_,
            top_features=model.feature_importance("gain").head(10).index.tolist(),
            limitations=default_limitations(target, record.design),
        )
        mlflow.log_text(render_model_card(card), "model_card.md")

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = model.save(Path(tmp) / MODEL_ARTIFACT)
            with warnings.catch_warnings():
                # MLflow suggests type hints on predict(); the signature is given explicitly.
                warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME_IN_RUN,
                    python_model=str(PYFUNC_CODE),
                    artifacts={MODEL_ARTIFACT: str(model_dir)},
                    signature=model_signature(model),
                    input_example=input_example(model, record.input_example),
                    pip_requirements=pip_requirements(),
                    metadata={
                        "target": target,
                        "feature_set_name": record.feature_set_name,
                        "feature_set_version": record.feature_set_version,
                    },
                )
        version = None
        if register:
            mlflow_client = client(resolved)
            version = _register(mlflow_client, name, info.model_uri, run.info.run_id, info.model_id)
            version_tags = {
                "target": target,
                "run_id": run.info.run_id,
                "design": record.design,
                "feature_set.name": record.feature_set_name,
                "feature_set.version": record.feature_set_version,
                "evaluation": str(record.data.get("evaluation", "")),
                **{
                    f"metric.{k}": f"{record.metrics[k]:.6f}"
                    for k in VERSION_METRIC_TAGS
                    if k in record.metrics and math.isfinite(record.metrics[k])
                },
            }
            for key, value in version_tags.items():
                mlflow_client.set_model_version_tag(name, version, key, value)
            mlflow_client.update_model_version(
                name,
                version,
                description=(
                    f"{target} model trained on {record.feature_set_name} "
                    f"{record.feature_set_version}; {record.design}; evaluated on "
                    f"{record.data.get('evaluation', 'held-out rows')}"
                ),
            )
    return LoggedVersion(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        name=name,
        version=version,
    )
