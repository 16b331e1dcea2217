"""Service command: serve."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from serving.cli.app import app, console, fail
from serving.online_settings import ENV_API_KEY, ServiceSettings, SettingsError


@app.command("serve")
def serve_command(
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = 3000,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on (0.0.0.0 to accept remote clients)."),
    ] = "127.0.0.1",
    snapshot: Annotated[
        Path | None,
        typer.Option(
            "--snapshot",
            help="A `portfolio score` output folder whose features.parquet answers lookups by "
            "id (default: the latest run under the runs folder, checked again every reload).",
        ),
    ] = None,
    api_key_env: Annotated[
        str,
        typer.Option(
            "--api-key-env",
            help="Environment variable that holds the API key; when it is set, /score and "
            "/portfolio need 'Authorization: Bearer <key>'.",
        ),
    ] = ENV_API_KEY,
    reload_seconds: Annotated[
        float | None,
        typer.Option(
            "--reload-seconds",
            min=0.1,
            help="How often to check for a new @champion or snapshot (default 30, or "
            "PORTFOLIO_RELOAD_SECONDS).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes. With 2 (the default) one keeps answering while BentoML "
            "restarts another that died; each holds both models and the snapshot.",
        ),
    ] = 2,
) -> None:
    """Start the scoring service (BentoML) with the champion models."""
    from serving.online_launch import LaunchError, check_snapshot, run_service

    try:
        settings = ServiceSettings.from_env()
    except SettingsError as error:
        raise fail(str(error)) from None
    api_key = os.environ.get(api_key_env) or None
    if api_key_env != ENV_API_KEY and api_key is None:
        raise fail(f"--api-key-env {api_key_env}: that environment variable is not set")
    settings = replace(
        settings,
        api_key=api_key,
        snapshot_dir=snapshot if snapshot is not None else settings.snapshot_dir,
        reload_seconds=reload_seconds if reload_seconds is not None else settings.reload_seconds,
    )
    try:
        folder = check_snapshot(settings)
    except LaunchError as error:
        raise fail(str(error)) from None
    console.print(
        f"serving on http://{host}:{port} (docs: /docs.json, health: /livez /readyz, "
        f"metrics: /metrics); snapshot: {folder if folder else 'none yet (what-if records only)'}; "
        f"API key: {'required' if settings.api_key else 'not required'}; workers: {workers}"
    )
    try:
        code = run_service(settings, host=host, port=port, workers=workers)
    except LaunchError as error:
        raise fail(str(error)) from None
    raise typer.Exit(code)


@app.command("package")
def package_command() -> None:
    """Build the service's bento: the @champion models and the locked dependencies inside.

    Run `bentoml containerize <tag>` on the printed tag for a container image.
    """
    from serving.packaging import PackagingError, package_service
    from training.registry import ChampionNotFound

    try:
        result = package_service()
    except (PackagingError, ChampionNotFound) as error:
        raise fail(str(error)) from None
    console.print(
        f"built bento {result.bento_tag} with models {', '.join(result.models)} "
        f"(dependencies: {result.requirements}); container: bentoml containerize {result.bento_tag}"
    )
