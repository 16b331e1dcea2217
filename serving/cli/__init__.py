"""The `portfolio` command line.

Each subcommand lives in a module of this package named for its area, parses
its arguments and calls one library function. Importing a module registers its
commands on `app`.
"""

from __future__ import annotations

from serving.cli.app import app


def main() -> None:
    """Entry point of the installed `portfolio` command."""
    from serving.cli import commands  # noqa: F401  (registers every subcommand)

    app()


__all__ = ["app", "main"]
