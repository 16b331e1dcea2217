"""Starting the online service: `bentoml serve` in a child process with the settings as env.

`portfolio serve` calls `run_service`. The BentoML process reads its
settings from the environment (`serving.online_settings`), the MLflow store
from `MLFLOW_TRACKING_URI` (default: the local store under `models/`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from serving.online_settings import ServiceSettings
from serving.runs import latest_run_dir, read_run_info

logger = logging.getLogger(__name__)

SERVICE_IMPORT = "serving.service:PortfolioService"
REPO_ROOT = Path(__file__).resolve().parents[1]
BENTOML_OPTIONS_ENV = "BENTOML_CONFIG_OPTIONS"
SERVICE_NAME_OPTION = "services.portfolio"  # the name in serving.service's @bentoml.service


class LaunchError(RuntimeError):
    """The service cannot be started as asked (the message says why)."""


def serve_command(host: str, port: int, service: str = SERVICE_IMPORT) -> list[str]:
    """The `bentoml serve` command line for the service."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        service,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(REPO_ROOT),
    ]


def serve_environment(
    settings: ServiceSettings, base: Mapping[str, str], workers: int | None = None
) -> dict[str, str]:
    """The child's environment: `base` plus the settings as variables.

    `workers` (when given) is passed to BentoML as `services.portfolio.workers`
    in BENTOML_CONFIG_OPTIONS, after any options already there.
    """
    env = dict(base)
    env.update(settings.to_env())
    if settings.api_key is None:
        env.pop("PORTFOLIO_API_KEY", None)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    if workers is not None:
        options = env.get(BENTOML_OPTIONS_ENV, "").strip()
        env[BENTOML_OPTIONS_ENV] = f"{options} {SERVICE_NAME_OPTION}.workers={workers}".strip()
    return env


def check_port_free(host: str, port: int) -> None:
    """Raise a LaunchError when `host:port` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LaunchError(
                f"cannot listen on {host}:{port} ({error.strerror}); choose another --port"
            ) from None


def check_snapshot(settings: ServiceSettings) -> Path | None:
    """The run folder the service will answer lookups from (None: none yet)."""
    if settings.snapshot_dir is not None:
        folder = settings.snapshot_dir
        if not folder.is_dir():
            raise LaunchError(f"--snapshot {folder} is not a folder")
        if read_run_info(folder) is None:
            raise LaunchError(
                f"--snapshot {folder} is not a completed `portfolio score` output "
                "(no readable manifest.json)"
            )
        if not (folder / "features.parquet").is_file():
            raise LaunchError(f"--snapshot {folder} has no features.parquet")
        return folder
    return latest_run_dir(settings.runs_root)


def run_service(
    settings: ServiceSettings,
    host: str = "127.0.0.1",
    port: int = 3000,
    environ: Mapping[str, str] | None = None,
    workers: int | None = None,
) -> int:
    """Run the service in the foreground until it stops; returns its exit code."""
    check_port_free(host, port)
    env = serve_environment(settings, os.environ if environ is None else environ, workers)
    command = serve_command(host, port)
    logger.debug("starting %s", " ".join(command))
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT)
    # SIGTERM (a container or service manager stopping `portfolio serve`) is passed on,
    # so BentoML finishes the requests in flight and stops its workers, instead of this
    # process dying and leaving the server running without a parent.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
