"""The typer application every `portfolio` subcommand registers on."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="portfolio",
    help="B2B account-portfolio scoring: features, churn and upsell models, the nightly job and the service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error (no traceback) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.callback()
def portfolio() -> None:
    """B2B account-portfolio scoring: features, churn and upsell models, the nightly job and the service."""
