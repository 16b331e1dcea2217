"""The model registry hand-off: champions, promotions and the champion gate.

Serving and the nightly job resolve `models:/<name>@champion` with
`load_champion`, which reads `booster.txt` + `model.json` straight from the
version's artifacts (no pyfunc machinery, no pickle).

The gate: a new version becomes champion only if, on the same evaluation
rows, its ROC-AUC is not lower than the champion's by more than
`auc_tolerance` (0.005) and its Brier score is not worse. The current
champion is re-scored on the new evaluation rows, so both are compared on the
same data. The decision and both sets of figures are tagged on the new
version; every promotion is tagged on the promoted version, on the
registered model (`last_promotion`) and logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from training.metrics import evaluate_binary
from training.model import CalibratedBoostedClassifier, ModelIntegrityError
from training.tracking import (
    MODEL_ARTIFACT,
    TARGETS,
    client,
    registered_model_name,
    registry_uri,
    tracking_uri,
)

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
# what the registry answers when the model or its alias does not exist
NO_SUCH_ALIAS_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class ChampionNotFound(LookupError):
    """No champion (or no such version) in the registry."""


class UnusableModelVersion(ValueError):
    """A registered version's artifacts are corrupted or unreadable (the message names them)."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    model: CalibratedBoostedClassifier
    run_id: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class VersionSummary:
    target: str
    name: str
    version: str
    aliases: list[str]
    run_id: str | None
    created_at: datetime
    tags: dict[str, str]
    description: str

    @property
    def is_champion(self) -> bool:
        return CHAMPION_ALIAS in self.aliases


@dataclass(frozen=True)
class GateSettings:
    auc_tolerance: float = 0.005
    brier_tolerance: float = 0.0


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate_version: str
    candidate: dict[str, float]
    champion_version: str | None = None
    champion: dict[str, float] | None = None
    evaluation: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        tags = {
            "gate.decision": "promoted" if self.promote else "rejected",
            "gate.reason": self.reason,
            "gate.evaluation": self.evaluation,
            "gate.candidate_roc_auc": _fmt(self.candidate.get("roc_auc")),
            "gate.candidate_brier": _fmt(self.candidate.get("brier")),
            "gate.champion_version": self.champion_version or "none",
            "gate.evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if self.champion is not None:
            tags["gate.champion_roc_auc"] = _fmt(self.champion.get("roc_auc"))
            tags["gate.champion_brier"] = _fmt(self.champion.get("brier"))
        tags.update(self.extra)
        return tags


def _fmt(value: float | None) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.6f}"


# ------------------------------------------------------------------ reading the registry


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """Without MLflow's download progress bar (it writes to stderr on every load)."""
    previous = os.environ.get(_PROGRESS_BAR_ENV)
    os.environ[_PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS_BAR_ENV, None)
        else:
            os.environ[_PROGRESS_BAR_ENV] = previous


def _version_or_raise(mlflow_client, name: str, version: str):
    try:
        return mlflow_client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ChampionNotFound(f"model {name!r} has no version {version!r}") from exc


def champion_version(target: str, prefix: str | None = None, uri: str | None = None) -> str | None:
    """The version number behind `<name>@champion`, or None when there is no champion.

    Other registry errors (e.g. the tracking server cannot be reached) are
    raised, so that they are not reported as a missing champion.
    """
    name = registered_model_name(target, prefix)
    try:
        return str(client(uri).get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException as exc:
        if exc.error_code in NO_SUCH_ALIAS_CODES:
            return None
        raise


def load_version(
    target: str, version: str, prefix: str | None = None, uri: str | None = None
) -> Champion:
    """Load one registered version's booster.txt + model.json (fast path, no pyfunc)."""
    name = registered_model_name(target, prefix)
    mlflow_client = client(uri)
    model_version = _version_or_raise(mlflow_client, name, version)
    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        try:
            # The version's concrete storage location, resolved through this
            # client's registry: a `models:/` URI would be resolved by MLflow
            # against its process-wide default registry, which need not be ours.
            model_root = mlflow_client.get_model_version_download_uri(name, model_version.version)
            artifact_uri = f"{model_root.rstrip('/')}/artifacts/{MODEL_ARTIFACT}"
            local = download_artifacts(
                artifact_uri=artifact_uri,
                dst_path=tmp,
                tracking_uri=tracking_uri(uri),
                registry_uri=registry_uri(uri),
            )
        except MlflowException as exc:
            raise ChampionNotFound(
                f"cannot read the artifacts of {name} version {model_version.version}: {exc}"
            ) from exc
        try:
            model = CalibratedBoostedClassifier.load(Path(local))
        except (ModelIntegrityError, ValueError, OSError) as exc:
            where = str(exc).replace(str(local), artifact_uri)
            raise UnusableModelVersion(
                f"{name} version {model_version.version} cannot be used: {where}"
            ) from None
    return Champion(
        name=name,
        version=str(model_version.version),
        model=model,
        run_id=model_version.run_id,
        metadata={**model.metadata_, "tags": dict(model_version.tags)},
    )


def load_champion(target: str, prefix: str | None = None, uri: str | None = None) -> Champion:
    """The model behind `models:/<name>@champion`; raises ChampionNotFound without one."""
    name = registered_model_name(target, prefix)
    version = champion_version(target, prefix, uri)
    if version is None:
        raise ChampionNotFound(
            f"no champion for {name!r} in {tracking_uri(uri)}: train a model first "
            "(portfolio train) or promote a version (portfolio promote)"
        )
    return load_version(target, version, prefix, uri)


def list_versions(
    prefix: str | None = None, uri: str | None = None, targets: tuple[str, ...] = TARGETS
) -> list[VersionSummary]:
    """Every registered version of the target models, newest first per target."""
    mlflow_client = client(uri)
    out: list[VersionSummary] = []
    for target in targets:
        name = registered_model_name(target, prefix)
        try:
            versions = mlflow_client.search_model_versions(f"name='{name}'")
        except MlflowException:
            continue
        aliases_by_version: dict[str, list[str]] = {}
        try:
            registered = mlflow_client.get_registered_model(name)
            for alias, version in (registered.aliases or {}).items():
                aliases_by_version.setdefault(str(version), []).append(alias)
        except MlflowException:
            pass
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            out.append(
                VersionSummary(
                    target=target,
                    name=name,
                    version=str(mv.version),
                    aliases=sorted(aliases_by_version.get(str(mv.version), [])),
                    run_id=mv.run_id,
                    created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
                    tags=dict(mv.tags),
                    description=mv.description or "",
                )
            )
    return out


# ------------------------------------------------------------------ promotion


def promote(
    target: str,
    version: str,
    reason: str,
    prefix: str | None = None,
    uri: str | None = None,
) -> str | None:
    """Move `@champion` to `version`; record it; return the previous champion version."""
    name = registered_model_name(target, prefix)
    mlflow_client = client(uri)
    _version_or_raise(mlflow_client, name, version)
    previous = champion_version(target, prefix, uri)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    mlflow_client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    for key, value in {
        "promoted_at": now,
        "promotion_reason": reason,
        "previous_champion": previous or "none",
    }.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)
    mlflow_client.set_registered_model_tag(
        name,
        "last_promotion",
        json.dumps({"version": str(version), "previous": previous, "at": now, "reason": reason}),
    )
    logger.info(
        "promoted %s version %s to @%s (previous: %s): %s",
        name,
        version,
        CHAMPION_ALIAS,
        previous or "none",
        reason,
    )
    return previous


def gate_decision(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    candidate_version: str,
    champion_version: str | None = None,
    settings: GateSettings | None = None,
    evaluation: str = "",
) -> GateDecision:
    """Whether the candidate may replace the champion (pure; no registry access)."""
    settings = settings or GateSettings()
    common = {
        "candidate_version": candidate_version,
        "candidate": candidate,
        "champion_version": champion_version,
        "champion": champion,
        "evaluation": evaluation,
    }
    if champion is None:
        return GateDecision(True, "no champion yet", **common)
    c_auc, c_brier = candidate["roc_auc"], candidate["brier"]
    h_auc, h_brier = champion["roc_auc"], champion["brier"]
    if not math.isfinite(c_auc) or not math.isfinite(c_brier):
        return GateDecision(False, "candidate metrics undefined on the evaluation rows", **common)
    if not math.isfinite(h_auc):
        h_auc = 0.5  # a champion that cannot rank (constant scores) ranks at chance
    auc_ok = c_auc >= h_auc - settings.auc_tolerance
    brier_ok = c_brier <= h_brier + settings.brier_tolerance
    figures = (
        f"ROC-AUC {c_auc:.4f} vs {h_auc:.4f} (tolerance {settings.auc_tolerance}), "
        f"Brier {c_brier:.4f} vs {h_brier:.4f}"
    )
    if auc_ok and brier_ok:
        return GateDecision(
            True, f"passes the gate against v{champion_version}: {figures}", **common
        )
    failed = [w for w, ok in (("ROC-AUC lower", auc_ok), ("Brier worse", brier_ok)) if not ok]
    return GateDecision(
        False, f"{' and '.join(failed)} than v{champion_version}: {figures}", **common
    )


def apply_champion_gate(
    target: str,
    candidate_version: str,
    X_eval: pd.DataFrame,
    y_eval: np.ndarray,
    candidate_scores: np.ndarray,
    evaluation: str,
    prefix: str | None = None,
    uri: str | None = None,
    settings: GateSettings | None = None,
) -> GateDecision:
    """Re-score the champion on the candidate's evaluation rows, decide, tag and maybe promote."""
    settings = settings or GateSettings()
    name = registered_model_name(target, prefix)
    candidate = _gate_metrics(y_eval, candidate_scores)
    current = champion_version(target, prefix, uri)
    extra: dict[str, str] = {}
    champion_metrics = None
    if current is not None and current != str(candidate_version):
        try:
            champion = load_version(target, current, prefix, uri)
            present = [f for f in champion.model.feature_names_ if f in X_eval.columns]
            extra["gate.champion_features_present"] = (
                f"{len(present)}/{len(champion.model.feature_names_)}"
            )
            champion_metrics = _gate_metrics(y_eval, champion.model.predict_proba(X_eval))
        except (ChampionNotFound, ValueError, OSError) as exc:
            extra["gate.champion_error"] = str(exc)[:500]
            logger.warning("champion %s v%s could not be re-scored: %s", name, current, exc)
    if current is not None and champion_metrics is None and current != str(candidate_version):
        decision = GateDecision(
            True,
            f"champion v{current} could not be re-scored on the evaluation rows",
            candidate_version=str(candidate_version),
            candidate=candidate,
            champion_version=current,
            evaluation=evaluation,
            extra=extra,
        )
    else:
        decision = gate_decision(
            candidate,
            champion_metrics,
            str(candidate_version),
            current,
            settings,
            evaluation,
        )
        decision = GateDecision(**{**decision.__dict__, "extra": extra})
    mlflow_client = client(uri)
    for key, value in decision.tags().items():
        mlflow_client.set_model_version_tag(name, str(candidate_version), key, value)
    if decision.promote:
        promote(target, str(candidate_version), f"gate: {decision.reason}", prefix, uri)
    else:
        logger.info("%s version %s not promoted: %s", name, candidate_version, decision.reason)
    return decision


def _gate_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    metrics = evaluate_binary(y, p)
    return {"roc_auc": metrics["roc_auc"], "brier": metrics["brier"]}
