"""Model commands: train, score (flat tables; `--sources` runs the nightly job), models, promote."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
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

from serving.cli.app import app, console, fail

logger = logging.getLogger(__name__)

METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
    ("brier", "Brier"),
    ("log_loss", "log loss"),
    ("ece", "ECE"),
    ("lift_top_decile", "lift, top decile"),
    ("arr_at_risk_rel_error", "ARR at risk rel. error"),
)
LOWER_IS_BETTER = {"brier", "log_loss", "ece"}


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """MLflow, Optuna and alembic chatter off for the command (restored afterwards)."""
    import optuna

    names = ("mlflow", "alembic", "optuna", "lightgbm")
    levels = {name: logging.getLogger(name).level for name in names}
    previous_optuna = optuna.logging.get_verbosity()
    previous_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        optuna.logging.set_verbosity(previous_optuna)
        if previous_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous_bar


class TrainingProgress:
    """Rich progress bars fed by the pipeline's ProgressEvent hook."""

    def __init__(self) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event: Any) -> None:
        key = f"{event.target or 'data'}"
        if event.stage == "panel":
            task = self._task("panel", "building panel", event.total)
            self._progress.update(task, detail=event.detail)
            return
        if "panel" in self._tasks:
            self._finish("panel")
        task = self._task(key, f"{key}", event.total)
        if event.stage == "tuning":
            self._progress.update(
                task,
                description=f"{key}: tuning",
                total=event.total,
                completed=event.done or 0,
                detail=event.detail,
            )
        elif event.stage == "done":
            self._finish(key)
        else:
            self._progress.update(task, description=f"{key}: {event.stage}", detail=event.detail)

    def _task(self, key: str, description: str, total: int | None) -> TaskID:
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(description, total=total, detail="")
        return self._tasks[key]

    def _finish(self, key: str) -> None:
        task = self._tasks[key]
        total = self._progress.tasks[task].total or 1
        self._progress.update(task, total=total, completed=total)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def metrics_table(result: Any) -> Table:
    """Model vs baselines on the evaluation rows; the better of model/best baseline in bold."""
    baselines = [name for name, values in result.baselines.items() if isinstance(values, dict)]
    table = Table(title=f"{result.target}: evaluation on {result.data.get('evaluation', '')}")
    table.add_column("metric")
    table.add_column("model", justify="right")
    for name in baselines:
        table.add_column(name, justify="right")
    for key, label in METRIC_ROWS:
        if key not in result.metrics:
            continue
        mine = result.metrics[key]
        theirs = [result.baselines[name].get(key, math.nan) for name in baselines]
        cells = [_fmt(mine), *[_fmt(v) for v in theirs]]
        finite = [v for v in theirs if isinstance(v, float) and not math.isnan(v)]
        if key != "arr_at_risk_rel_error" and finite and not math.isnan(mine):
            best = min(finite) if key in LOWER_IS_BETTER else max(finite)
            wins = mine <= best if key in LOWER_IS_BETTER else mine >= best
            if wins:
                cells[0] = f"[bold green]{cells[0]}[/]"
        table.add_row(label, *cells)
    return table


def print_training_summary(training: Any) -> None:
    for note in training.table_notes:
        console.print(f"[yellow]{note.column}[/]: {note.action}: {note.detail}")
    for result in training.targets.values():
        console.print(metrics_table(result))
        for name, values in result.baselines.items():
            if isinstance(values, str):
                console.print(f"  baseline {name}: {values}")
        verdicts = []
        for name, values in result.baselines.items():
            if isinstance(values, dict):
                beats = result.beats(name)
                verdicts.append(f"{'beats' if beats else 'does not beat'} {name} on ROC-AUC")
        if verdicts:
            console.print(f"  the model {', '.join(verdicts)}")
        tuning = result.tuning
        console.print(
            f"  tuning: {tuning.n_trials} trials ({tuning.n_pruned} pruned) in "
            f"{tuning.duration_seconds:.0f}s; calibration: {result.model.calibrator_['method']}; "
            f"trained in {result.duration_seconds:.0f}s"
        )
        if result.logged is None:
            continue
        line = f"  logged run {result.logged.run_id}"
        if result.model_version is not None:
            line += f"; registered {result.logged.name} version {result.model_version}"
        console.print(line)
        if result.gate is not None:
            if result.gate.promote:
                console.print(
                    f"  [bold green]@champion[/] -> v{result.model_version}: {result.gate.reason}"
                )
            else:
                console.print(f"  [bold yellow]not promoted[/]: {result.gate.reason}")
    if training.tracking_uri:
        console.print(
            f"tracking store: {training.tracking_uri} ({training.duration_seconds:.0f}s in all)"
        )


def _load_tables(sources: Path) -> Any:
    from features.sources import SourcesError, load_sources

    try:
        loaded = load_sources(sources)
    except SourcesError as error:
        raise fail(f"{sources} cannot be used:\n{error}") from None
    if not loaded.report.ok:
        lines = [
            f"- {issue.table or '-'}.{issue.column or '-'} [{issue.rule}] {issue.message}"
            for issue in loaded.report.errors
        ]
        raise fail(
            f"{sources} is not usable (`portfolio validate --sources {sources}` shows the "
            "full report):\n" + "\n".join(lines)
        )
    return loaded.tables


@app.command("train")
def train_command(
    sources: Annotated[
        Path | None,
        typer.Option("--sources", help="sources.yaml of contract tables (time-split training)."),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="A flat CSV/Parquet table, one row per account."),
    ] = None,
    id_col: Annotated[str | None, typer.Option("--id", help="Id column of the flat table.")] = None,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Label column of the flat table (0/1, Yes/No, True/False)."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Train as of YYYY-MM-DD (default: the last date in the data)."
        ),
    ] = None,
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=1, help="Label horizon in days.")
    ] = 90,
    target: Annotated[
        str | None,
        typer.Option("--target", help="churn, upsell or all (default: all; churn for --table)."),
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Optuna trials per target.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=1, help="Tuning time budget per target, in seconds."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the search and splits.")] = 0,
    no_promote: Annotated[
        bool, typer.Option("--no-promote", help="Register without passing the champion gate.")
    ] = False,
) -> None:
    """Tune, train, calibrate, evaluate, log to MLflow, register and gate the models."""
    from dataclasses import replace

    from mlflow.exceptions import MlflowException

    from features.build import FeatureError
    from training.flat_table import TableError
    from training.pipeline import (
        TrainingError,
        TrainingSettings,
        train_from_sources,
        train_from_table,
    )

    if (sources is None) == (table is None):
        raise fail("give exactly one of --sources FILE or --table FILE")
    if table is not None and (id_col is None or label is None):
        raise fail("--table needs --id COLUMN and --label COLUMN")
    if sources is not None and (id_col or label):
        raise fail("--id and --label go with --table, not --sources")
    chosen = target or ("churn" if table is not None else "all")
    allowed = ("churn", "upsell") if table is not None else ("churn", "upsell", "all")
    if chosen not in allowed:
        raise fail(f"--target must be one of {', '.join(allowed)}, got {chosen!r}")

    settings = TrainingSettings()
    tuning = replace(settings.tuning, seed=seed)
    if trials is not None:
        tuning = replace(tuning, n_trials=trials)
    if timeout is not None:
        tuning = replace(tuning, timeout_seconds=timeout)
    settings = replace(settings, tuning=tuning, promote=not no_promote)

    try:
        with quiet_libraries(), TrainingProgress() as progress:
            if sources is not None:
                tables = _load_tables(sources)
                result = train_from_sources(
                    tables, as_of, horizon_days, chosen, settings, progress=progress
                )
            else:
                assert table is not None and id_col is not None and label is not None
                result = train_from_table(table, id_col, label, chosen, settings, progress=progress)
    except typer.Exit:
        raise
    except (TrainingError, TableError, FeatureError) as error:
        raise fail(str(error)) from None
    except MlflowException as error:
        logger.debug("MLflow failed", exc_info=True)
        raise fail(f"MLflow tracking store error: {error.message}") from None
    except Exception as error:  # a message, never a traceback
        logger.debug("training failed", exc_info=True)
        raise fail(f"training failed: {type(error).__name__}: {error}") from None
    print_training_summary(result)


@app.command("score")
def score_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    sources: Annotated[
        Path | None,
        typer.Option("--sources", help="sources.yaml: run the nightly job on contract tables."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="As-of date YYYY-MM-DD (with --sources).")
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local or spark (with --sources).")
    ] = "local",
    spark_master: Annotated[
        str | None, typer.Option("--spark-master", help="Spark master URL (with --engine spark).")
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions",
            min=1,
            help="Load and build features this many parts of the accounts at a time "
            "(--engine local; default: from the size of the sources).",
        ),
    ] = None,
    table: Annotated[
        Path | None, typer.Option("--table", help="A flat CSV/Parquet table to score.")
    ] = None,
    id_col: Annotated[str | None, typer.Option("--id", help="Id column of the flat table.")] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="churn or upsell (default: every flat-table champion)."),
    ] = None,
) -> None:
    """Score with the champion models: the nightly job (--sources) or a flat table (--table)."""
    if (sources is None) == (table is None):
        raise fail("give exactly one of --sources FILE or --table FILE")
    if sources is not None:
        from serving.cli.nightly import score_sources

        score_sources(
            sources, as_of, out, engine=engine, spark_master=spark_master, partitions=partitions
        )
        return
    if id_col is None:
        raise fail("--table needs --id COLUMN")
    if target is not None and target not in ("churn", "upsell"):
        raise fail(f"--target must be churn or upsell, got {target!r}")

    from mlflow.exceptions import MlflowException

    from training.flat_table import TableError
    from training.pipeline import TrainingError, score_table

    assert table is not None
    try:
        with quiet_libraries():
            scores = score_table(table, id_col, target)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "scores.parquet"
        scores.to_parquet(path, index=False)
    except (TrainingError, TableError, ValueError) as error:
        raise fail(str(error)) from None
    except MlflowException as error:
        raise fail(f"MLflow tracking store error: {error.message}") from None
    except OSError as error:
        raise fail(f"could not write {out}: {error}") from None
    columns = [c for c in scores.columns if c.startswith("p_")]
    summary = Table(title=f"scored {len(scores):,} accounts from {table.name}")
    summary.add_column("score")
    summary.add_column("model version")
    summary.add_column("mean", justify="right")
    summary.add_column("P90", justify="right")
    for column in columns:
        target_name = column.removeprefix("p_")
        summary.add_row(
            column,
            str(scores[f"{target_name}_model_version"].iloc[0]),
            f"{scores[column].mean():.4f}",
            f"{scores[column].quantile(0.9):.4f}",
        )
    console.print(summary)
    console.print(f"wrote [bold]{path}[/]")


@app.command("models")
def models_command() -> None:
    """List registered model versions, their aliases and evaluation figures."""
    from mlflow.exceptions import MlflowException

    from training.registry import list_versions
    from training.tracking import tracking_uri

    try:
        with quiet_libraries():
            versions = list_versions()
    except MlflowException as error:
        raise fail(f"MLflow tracking store error: {error.message}") from None
    table = Table(title=f"registered models in {tracking_uri()}")
    table.add_column("model", no_wrap=True)
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("aliases", no_wrap=True, min_width=9)
    table.add_column("created (UTC)")
    table.add_column("ROC-AUC", justify="right", no_wrap=True)
    table.add_column("Brier", justify="right", no_wrap=True)
    table.add_column("gate")
    table.add_column("feature set", overflow="fold")
    for v in versions:
        gate = v.tags.get("gate.decision", "")
        if v.tags.get("promotion_reason", "").startswith("manual"):
            gate = f"{gate}, manual promotion".strip(", ")
        table.add_row(
            v.name,
            v.version,
            " ".join(f"@{a}" for a in v.aliases),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.tags.get("metric.roc_auc", "-")[:6],
            v.tags.get("metric.brier", "-")[:6],
            gate,
            f"{v.tags.get('feature_set.name', '')} {v.tags.get('feature_set.version', '')}".strip(),
        )
    if not versions:
        console.print("no registered models yet: run `portfolio train`")
        return
    console.print(table)


@app.command("promote")
def promote_command(
    target: Annotated[str, typer.Option("--target", help="churn or upsell.")],
    version: Annotated[str, typer.Option("--version", help="The version to make champion.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded on the version).")
    ] = "manual promotion",
) -> None:
    """Move @champion to a version by hand (roll back or forward); the change is recorded."""
    from mlflow.exceptions import MlflowException

    from training.registry import ChampionNotFound, promote

    if target not in ("churn", "upsell"):
        raise fail(f"--target must be churn or upsell, got {target!r}")
    try:
        with quiet_libraries():
            previous = promote(target, version, f"manual: {reason}")
    except (ChampionNotFound, ValueError) as error:
        raise fail(str(error)) from None
    except MlflowException as error:
        raise fail(f"MLflow tracking store error: {error.message}") from None
    console.print(
        f"{target}: @champion -> version {version} (previous: {previous or 'none'}); "
        f"reason recorded: manual: {reason}"
    )
