"""Data commands: generate, validate, features."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from serving.cli.app import app, console, fail

logger = logging.getLogger(__name__)


@app.command("validate")
def validate_command(
    sources: Annotated[
        Path,
        typer.Option(
            "--sources", help="The sources.yaml that maps your data onto the contract tables."
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
) -> None:
    """Check every table against the data contract: exit 0 if usable, 1 otherwise."""
    from features.validation import validate_sources

    try:
        report = validate_sources(sources)
    except Exception as error:  # bad input must give a message, never a traceback
        logger.debug("validation of %s failed", sources, exc_info=True)
        raise fail(f"could not validate {sources}: {type(error).__name__}: {error}") from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        console.print(report)
    raise typer.Exit(0 if report.ok else 1)
