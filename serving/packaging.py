"""Packaging the service as a bento: the champion models and the locked dependencies inside.

`package_service` does the three steps of `portfolio package`:

1. `export_champions`: copy the `@champion` version of `churn` and `upsell`
   from the MLflow registry into the BentoML model store (`BENTOML_HOME`) as
   `portfolio-churn` and `portfolio-upsell`: LightGBM text + JSON, exactly
   what the registry holds (no pickle), with the registered name and
   version in the model's metadata;
2. `write_requirements`: the project's locked runtime dependencies
   (`uv export --frozen --no-dev`) into `build/bento-requirements.txt`;
3. `bentoml build` of `bentofile.yaml`, which lists both models, that
   requirements file and `PORTFOLIO_MODEL_SOURCE=bento`, so the service in
   the bento (or in its container: `bentoml containerize portfolio:latest`)
   loads the packaged champions instead of asking a registry.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.model import CalibratedBoostedClassifier
from training.registry import Champion, load_champion
from training.tracking import TARGETS

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = REPO_ROOT / "bentofile.yaml"
REQUIREMENTS_FILE = REPO_ROOT / "build" / "bento-requirements.txt"
BENTO_NAME = "portfolio"
MODEL_NAME_PREFIX = "portfolio-"


class PackagingError(RuntimeError):
    """The bento cannot be built; the message says why."""


def bento_model_name(target: str) -> str:
    """The BentoML model name of a target's packaged champion (`portfolio-churn`)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return f"{MODEL_NAME_PREFIX}{target}"


def export_champion(champion: Champion, target: str) -> str:
    """Save one champion into the BentoML model store; returns its tag."""
    import bentoml

    metadata = {
        "target": target,
        "registered_model": champion.name,
        "version": str(champion.version),
        "run_id": champion.run_id or "",
    }
    with bentoml.models.create(
        bento_model_name(target),
        labels={"target": target, "registered_version": str(champion.version)},
        metadata=metadata,
    ) as stored:
        champion.model.save(Path(stored.path))
    logger.info("exported %s v%s as %s", champion.name, champion.version, stored.tag)
    return str(stored.tag)


def export_champions(prefix: str | None = None, uri: str | None = None) -> list[str]:
    """Copy both `@champion` versions from the registry into the BentoML model store."""
    return [export_champion(load_champion(t, prefix, uri), t) for t in TARGETS]


def _stored_model(target: str) -> Any:
    import bentoml

    try:
        return bentoml.models.get(f"{bento_model_name(target)}:latest")
    except bentoml.exceptions.NotFound:
        raise LookupError(
            f"no packaged {target} model ({bento_model_name(target)}) in this bento or "
            "BentoML model store: run `portfolio package`"
        ) from None


def bundled_version(target: str) -> str:
    """The registered version of the packaged champion of `target`."""
    return str(_stored_model(target).info.metadata["version"])


def load_bundled_champion(target: str) -> Champion:
    """The packaged champion of `target` (from the bento's model store)."""
    stored = _stored_model(target)
    metadata: Mapping[str, Any] = stored.info.metadata
    model = CalibratedBoostedClassifier.load(Path(stored.path))
    return Champion(
        name=str(metadata["registered_model"]),
        version=str(metadata["version"]),
        model=model,
        run_id=str(metadata.get("run_id") or "") or None,
        metadata={**model.metadata_, "bento_model": str(stored.tag)},
    )


def write_requirements(path: Path = REQUIREMENTS_FILE) -> Path:
    """The locked runtime dependencies (uv.lock, without dev tools) as a requirements file."""
    uv = shutil.which("uv")
    if uv is None:
        raise PackagingError("`uv` is needed to export the locked dependencies; install uv")
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        uv,
        "export",
        "--frozen",
        "--no-dev",
        "--no-hashes",
        "--no-emit-project",
        "--no-header",
        "--no-annotate",
        "--output-file",
        str(path),
    ]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise PackagingError(f"uv export failed: {completed.stderr.strip()[-2000:]}")
    return path


@dataclass(frozen=True)
class PackageResult:
    bento_tag: str
    models: list[str]
    requirements: Path


def build_bento(environ: Mapping[str, str] | None = None) -> str:
    """`bentoml build` of `bentofile.yaml`; returns the bento tag."""
    command = [sys.executable, "-m", "bentoml", "build", "-f", str(BENTOFILE), "--output", "tag"]
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=dict(os.environ if environ is None else environ),
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise PackagingError(f"bentoml build failed:\n{completed.stderr.strip()[-3000:]}")
    lines = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
    tag = lines[-1].removeprefix("__tag__:") if lines else ""
    if not tag.startswith(f"{BENTO_NAME}:"):
        raise PackagingError(f"bentoml build gave no bento tag:\n{completed.stdout[-2000:]}")
    return tag


def package_service(prefix: str | None = None, uri: str | None = None) -> PackageResult:
    """Export the champions, write the locked requirements and build the bento."""
    models = export_champions(prefix, uri)
    requirements = write_requirements()
    return PackageResult(bento_tag=build_bento(), models=models, requirements=requirements)
