"""`portfolio generate`: write a synthetic portfolio (Parquet tables, sources.yaml, ground truth)."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from serving.cli.app import app, console, fail

logger = logging.getLogger(__name__)


class Kind(StrEnum):
    saas = "saas"
    orders = "orders"


@app.command("generate")
def generate_command(
    accounts: Annotated[
        int, typer.Option("--accounts", help="Number of accounts (customers and prospects).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the Parquet tables and sources.yaml.")
    ],
    months: Annotated[int, typer.Option("--months", help="Months of history to simulate.")] = 36,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same data.")
    ] = 0,
    kind: Annotated[
        Kind,
        typer.Option(
            "--kind", help="saas (subscriptions, usage) or orders (industrial B2B orders)."
        ),
    ] = Kind.saas,
    shards: Annotated[
        int,
        typer.Option(
            "--shards",
            min=1,
            help="Generate in this many independent pieces (one in memory at a time; for "
            "millions of accounts), each table as <table>/part-*.parquet.",
        ),
    ] = 1,
) -> None:
    """Generate a synthetic portfolio with a known ground truth."""
    from features.synthetic import GeneratorSettings, generate_and_write, generate_and_write_shards

    try:
        settings = GeneratorSettings(n_accounts=accounts, months=months, seed=seed, kind=kind.value)
    except ValidationError as error:
        problems = "; ".join(
            f"--{'.'.join(str(part) for part in e['loc']).replace('n_accounts', 'accounts')}: {e['msg']}"
            for e in error.errors()
        )
        raise fail(f"invalid settings: {problems}") from None
    if shards > accounts:
        raise fail(f"invalid settings: --shards {shards} is more than --accounts {accounts}")
    try:
        with console.status(f"generating {accounts:,} accounts x {months} months ({kind.value})"):
            result = (
                generate_and_write(settings, out)
                if shards == 1
                else generate_and_write_shards(settings, shards, out)
            )
    except OSError as error:
        logger.debug("writing the portfolio to %s failed", out, exc_info=True)
        raise fail(f"could not write to {out}: {error}") from None

    table = Table(title=f"synthetic portfolio {settings.portfolio_name}")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for name, rows in result.row_counts.items():
        table.add_row(f"{name}.parquet" if shards == 1 else f"{name}/part-*.parquet", f"{rows:,}")
    console.print(table)
    console.print(
        f"wrote [bold]{result.sources_path}[/] "
        f"(and {'ground_truth.parquet' if shards == 1 else 'ground_truth/'}, settings.json) "
        f"in {result.seconds:.1f}s"
    )
    console.print(f"check it with: portfolio validate --sources {result.sources_path}")
