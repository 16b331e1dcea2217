"""`portfolio score --sources ...`: the nightly job on the command line.

The `score` command (serving/cli/train_commands.py) hands `--sources` runs
to `score_sources`, which shows progress bars on the long stages, prints a
summary at the end and exits with a code a scheduler can act on:
0 ok, 1 the job failed, 2 the input is unusable (sources, tables, as-of date).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from serving.batch import (
    JobInputError,
    JobResult,
    NightlyJobError,
    NightlyJobSettings,
    run_nightly_job,
)
from serving.charts import compact_number, percent
from serving.cli.app import console, fail
from serving.publish import OutputLockedError

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
MLFLOW_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class StageProgress:
    """A rich progress display fed by the job's `progress(stage, completed, total)` callback."""

    def __init__(self, output: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=output,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, stage: str, completed: int, total: int | None) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=completed, total=total)


def summary_table(result: JobResult) -> Table:
    """The end-of-run summary: the headline figures and where the files are."""
    summary = result.summary
    band = summary.get("weighted_churn_risk_band") or {}
    arr_total = summary.get("arr_total") or 0.0
    risk = summary.get("weighted_churn_risk") or 0.0
    table = Table(title=f"Nightly run as of {result.as_of.date()}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")  # paths wrap rather than lose their end
    table.add_row("ARR", compact_number(arr_total))
    table.add_row(
        "Weighted churn risk",
        f"{compact_number(risk)} ({percent(risk / arr_total if arr_total else None)} of ARR), "
        f"P10–P90 {compact_number(band.get('p10'))}–{compact_number(band.get('p90'))}",
    )
    alerts = result.alerts
    critical = sum(1 for a in alerts if a.get("severity") == "critical")
    table.add_row("Alerts", f"{len(alerts)} ({critical} critical)")
    table.add_row(
        "Accounts",
        f"{result.active:,} active: {result.scored:,} scored, {result.rejected:,} rejected"
        + (
            f" (loaded in {result.manifest['partitions']} partitions)"
            if result.manifest.get("partitions", 1) > 1
            else ""
        ),
    )
    for name, path in result.paths.items():
        table.add_row(name, str(path))
    return table


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """MLflow's artifact progress bars and store chatter off while the job runs."""
    names = ("mlflow", "alembic")
    levels = {name: logging.getLogger(name).level for name in names}
    previous = os.environ.get(MLFLOW_PROGRESS_BAR)
    os.environ[MLFLOW_PROGRESS_BAR] = "false"
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if previous is None:
            os.environ.pop(MLFLOW_PROGRESS_BAR, None)
        else:
            os.environ[MLFLOW_PROGRESS_BAR] = previous


def score_sources(
    sources: Path,
    as_of: str | None,
    out: Path | None,
    engine: str = "local",
    spark_master: str | None = None,
    partitions: int | None = None,
) -> None:
    """Run the nightly job and exit 0 (ok), 1 (failed) or 2 (bad input).

    `partitions`: parts of the accounts loaded at a time (None: from the size of the sources).
    """
    settings = NightlyJobSettings(partitions=partitions)
    try:
        with _quiet_libraries(), StageProgress(console) as progress:
            result = run_nightly_job(
                sources,
                as_of=as_of,
                out_dir=out,
                settings=settings,
                engine=engine,
                spark_master=spark_master,
                progress=progress,
            )
    except JobInputError as error:
        raise fail(str(error), EXIT_BAD_INPUT) from None
    except (NightlyJobError, OutputLockedError) as error:
        raise fail(str(error), EXIT_FAILED) from None
    except Exception as error:  # a scheduler needs an exit code and a message, not a traceback
        logger.debug("the nightly job failed", exc_info=True)
        raise fail(
            f"the nightly job failed: {type(error).__name__}: {error} "
            "(previous outputs are untouched)",
            EXIT_FAILED,
        ) from None
    console.print(summary_table(result))
    raise typer.Exit(EXIT_OK)
