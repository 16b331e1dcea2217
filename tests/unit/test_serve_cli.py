"""`portfolio serve`: clear refusals before anything starts; the child gets the settings."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.cli import app
from serving.cli import commands as _commands  # noqa: F401  (registers the subcommands)
from serving.online_launch import (
    LaunchError,
    check_port_free,
    check_snapshot,
    serve_command,
    serve_environment,
)
from serving.online_settings import ServiceSettings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORTFOLIO_API_KEY", "PORTFOLIO_SNAPSHOT", "PORTFOLIO_MAX_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)


def _invoke(*args: str) -> tuple[int, str]:
    """Exit code and output with line wrapping undone (rich wraps long messages)."""
    result = runner.invoke(app, ["serve", *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def _run_folder(root: Path, features: bool = True) -> Path:
    folder = root / "2024-06-30"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"as_of": "2024-06-30"}))
    if features:
        (folder / "features.parquet").write_bytes(b"")
    return folder


def test_missing_snapshot_folder_is_refused(tmp_path: Path) -> None:
    code, output = _invoke("--snapshot", str(tmp_path / "nowhere"))
    assert code == 1
    assert "is not a folder" in output


def test_folder_without_manifest_is_refused(tmp_path: Path) -> None:
    code, output = _invoke("--snapshot", str(tmp_path))
    assert code == 1
    assert "not a completed `portfolio score` output" in output


def test_run_without_features_is_refused(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path, features=False)
    with pytest.raises(LaunchError, match=r"has no features\.parquet"):
        check_snapshot(ServiceSettings(snapshot_dir=folder))


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTFOLIO_MAX_ACCOUNTS", "lots")
    code, output = _invoke()
    assert code == 1
    assert "PORTFOLIO_MAX_ACCOUNTS must be an integer" in output


def test_unset_api_key_variable_is_refused() -> None:
    code, output = _invoke("--api-key-env", "NO_SUCH_VARIABLE_FOR_THE_KEY")
    assert code == 1
    assert "NO_SUCH_VARIABLE_FOR_THE_KEY" in output


def test_port_in_use_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LaunchError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)


def test_child_environment_carries_the_settings(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    settings = ServiceSettings(api_key="k", snapshot_dir=folder, reload_seconds=2.0)
    env = serve_environment(settings, {"PATH": "/bin", "PORTFOLIO_API_KEY": "stale"})
    assert env["PATH"] == "/bin"
    assert env["PORTFOLIO_API_KEY"] == "k"
    assert env["PORTFOLIO_SNAPSHOT"] == str(folder)
    assert env["PORTFOLIO_RELOAD_SECONDS"] == "2.0"
    assert ServiceSettings.from_env(env) == settings
    without_key = serve_environment(ServiceSettings(), {"PORTFOLIO_API_KEY": "stale"})
    assert "PORTFOLIO_API_KEY" not in without_key


def test_serve_command_runs_bentoml_on_the_service() -> None:
    command = serve_command("127.0.0.1", 3001)
    assert command[:5] == [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:PortfolioService",
    ]
    assert command[command.index("--port") + 1] == "3001"
