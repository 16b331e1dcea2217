"""`portfolio demo`: the whole product on embedded defaults, in one call.

Generate a synthetic portfolio, train and gate both models in the MLflow
store, then run the nightly job twice (a month before the latest date, then
at the latest date) so that the second run has movers and a previous run to
compare with. Every step is a library function that the other commands call
too; this module only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.synthetic import GeneratorSettings, generate_and_write
from serving.batch import JobResult, NightlyJobSettings, run_nightly_job
from training.pipeline import ProgressEvent, TrainingResult, TrainingSettings, train_from_sources
from training.tuning import TuningSettings

JobProgress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo builds. Defaults keep it to a few minutes on 2 cores."""

    accounts: int = 2000
    months: int = 36
    seed: int = 0
    kind: str = "saas"
    horizon_days: int = 90
    # A lighter search than `portfolio train`'s default: the demo shows the
    # whole flow; `portfolio train` is where to spend time on tuning.
    tuning: TuningSettings = field(
        default_factory=lambda: TuningSettings(n_trials=15, timeout_seconds=25.0)
    )


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    sources_path: Path
    row_counts: dict[str, int]
    training: TrainingResult
    runs: list[JobResult]

    @property
    def latest_run(self) -> JobResult:
        return self.runs[-1]


def demo_run_dates(latest: pd.Timestamp) -> list[pd.Timestamp]:
    """The as-of dates the demo scores: a month before the latest date, then the latest."""
    latest = pd.Timestamp(latest).normalize()
    return [latest - pd.DateOffset(months=1), latest]


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    on_stage: Callable[[str], None] | None = None,
    training_progress: Callable[[ProgressEvent], None] | None = None,
    job_progress: Callable[[pd.Timestamp], JobProgress] | None = None,
) -> DemoResult:
    """Generate, train, promote, score twice; return where everything is."""
    from features.sources import load_sources

    settings = settings or DemoSettings()
    stage = on_stage or (lambda name: None)
    out_dir = Path(out_dir).resolve()

    stage("generate")
    generated = generate_and_write(
        GeneratorSettings(
            n_accounts=settings.accounts,
            months=settings.months,
            seed=settings.seed,
            kind=settings.kind,
        ),
        out_dir / "data",
    )
    loaded = load_sources(generated.sources_path)
    loaded.raise_for_errors()

    stage("train")
    training = train_from_sources(
        loaded.tables,
        horizon_days=settings.horizon_days,
        target="all",
        settings=TrainingSettings(tuning=settings.tuning),
        progress=training_progress,
    )

    stage("score")
    from features.build import data_period

    latest = data_period(loaded.tables).end
    runs = []
    for as_of in demo_run_dates(latest):
        runs.append(
            run_nightly_job(
                generated.sources_path,
                as_of=as_of,
                out_dir=out_dir / "runs" / f"{as_of.date()}",
                settings=NightlyJobSettings(),
                progress=job_progress(as_of) if job_progress else None,
            )
        )
    return DemoResult(
        out_dir=out_dir,
        sources_path=generated.sources_path,
        row_counts=dict(generated.row_counts),
        training=training,
        runs=runs,
    )
