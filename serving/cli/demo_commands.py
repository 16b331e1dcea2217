"""`portfolio demo`: the main job on embedded defaults."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from serving.cli.app import app, console, fail
from serving.cli.train_commands import TrainingProgress, print_training_summary, quiet_libraries

if TYPE_CHECKING:
    from serving.cli.nightly import StageProgress

STAGES = {
    "generate": "1/3 generating a synthetic portfolio",
    "train": "2/3 training, evaluating and gating the churn and upsell models",
    "score": "3/3 scoring the portfolio (a month ago, then at the latest date) and writing the report",
}


class DemoDisplay:
    """One rich live display at a time: a rule per stage, progress bars inside it."""

    def __init__(self) -> None:
        self._live: AbstractContextManager[Any] | None = None

    def _switch(self, display: AbstractContextManager[Any] | None) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
        self._live = display
        if display is not None:
            display.__enter__()

    def stage(self, name: str) -> None:
        self._switch(None)
        console.rule(f"[bold]{STAGES[name]}")
        if name == "train":
            self._switch(TrainingProgress())

    def training(self, event: Any) -> None:
        if isinstance(self._live, TrainingProgress):
            self._live(event)

    def job(self, as_of: Any) -> StageProgress:
        from serving.cli.nightly import StageProgress

        console.print(f"nightly run as of {as_of.date()}")
        progress = StageProgress(console)
        self._switch(progress)
        return progress

    def close(self) -> None:
        self._switch(None)


@app.command("demo")
def demo_command(
    accounts: Annotated[
        int, typer.Option("--accounts", min=200, help="Accounts in the synthetic portfolio")
    ] = 2000,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the data and the nightly runs")
    ] = Path("portfolio-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic portfolio")] = 0,
) -> None:
    """Generate a portfolio, train both models (MLflow), promote champions, score, write the report."""
    from serving.cli.nightly import summary_table
    from serving.demo import DemoSettings, run_demo

    display = DemoDisplay()
    try:
        with quiet_libraries():
            result = run_demo(
                out,
                DemoSettings(accounts=accounts, seed=seed),
                on_stage=display.stage,
                training_progress=display.training,
                job_progress=display.job,
            )
    except Exception as error:  # the demo ends with a message, not a traceback
        display.close()
        raise fail(f"the demo failed: {type(error).__name__}: {error}") from None
    display.close()
    print_training_summary(result.training)
    console.print(summary_table(result.latest_run))
    latest = result.latest_run
    console.rule("[bold]where everything is")
    console.print(f"data (sources.yaml)  {result.sources_path}")
    console.print(f"MLflow store         {result.training.tracking_uri}")
    console.print(f"nightly runs         {', '.join(str(run.out_dir) for run in result.runs)}")
    console.print(f"report               {latest.out_dir / 'report.html'}")
    console.print("next:")
    console.print(f"  uv run portfolio serve --snapshot {latest.out_dir}")
    console.print("  uv run portfolio models")
