"""Starting, reaching and stopping the scoring service in integration tests.

Shared by the service, fuzzing and reliability tests (the `service_home`
fixture in this folder's conftest builds a `ServiceHome`). Every server listens on
127.0.0.1 on a free port and runs in its own process group, so `stop` ends it
with its workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

READY_TIMEOUT_SECONDS = 240
REPO = Path(__file__).resolve().parents[2]
SERVICE_TARGET = "serving.service:PortfolioService"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A service process and how to reach it."""

    url: str
    process: subprocess.Popen
    log: Path
    headers: dict[str, str] = field(default_factory=dict)

    def post(self, path: str, body=None, **kwargs) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["json"] = body
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_service(env: dict[str, str], log: Path, target: str = SERVICE_TARGET) -> Server:
    """`bentoml serve <target>` (the service in this checkout, or a bento tag)."""
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", target]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    from_source = target.startswith("serving.")
    if from_source:
        command += ["--working-dir", str(REPO)]
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO if from_source else log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(f"http://127.0.0.1:{port}", process, log)


def start_with_cli(env: dict[str, str], log: Path, *args: str) -> Server:
    """`portfolio serve --port P ...`: the command users run (it starts `bentoml serve`)."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("portfolio")),
        "serve",
        "--port",
        str(port),
        *args,
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(f"http://127.0.0.1:{port}", process, log)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group; SIGKILL when it is still there after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def wait_for(server: Server, path: str, status: int = 200) -> None:
    """Until GET `path` answers `status` (fails the test with the log's tail otherwise)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the service exited:\n{server.log_text()[-4000:]}")
        try:
            if server.get(path).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{path} never answered {status}:\n{server.log_text()[-4000:]}")


def wait_until(condition, timeout: float = 60.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out: {message}")


def assert_error(response: httpx.Response, status: int, type_: str) -> dict:
    """The answer is `status` with the documented error body of `type_`; returns `error`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == type_
    assert "Traceback" not in response.text
    return error


@dataclass(frozen=True)
class ServiceHome:
    """A private copy of the champion store and a runs folder holding the nightly run."""

    root: Path
    tracking_uri: str
    database: Path
    runs_root: Path
    run_dir: Path
    features: pd.DataFrame

    def env(self, name: str, **overrides: str) -> dict[str, str]:
        """The environment of a service named `name` (no PORTFOLIO_/MLFLOW_/BENTOML_ leaks)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PORTFOLIO_", "MLFLOW_", "BENTOML_"))
        }
        env.update(
            {
                "MLFLOW_TRACKING_URI": self.tracking_uri,
                "PORTFOLIO_RUNS_ROOT": str(self.runs_root),
                "PORTFOLIO_RELOAD_SECONDS": "1",
                "PORTFOLIO_RETRY_SECONDS": "1",
                "BENTOML_HOME": str(self.root / f"bentoml-{name}"),
                "BENTOML_DO_NOT_TRACK": "true",
            }
        )
        env.update(overrides)
        return env

    def account_ids(self, n: int) -> list[str]:
        """The first `n` account ids of the snapshot."""
        return self.features["account_id"].astype(str).head(n).tolist()


def make_service_home(champion_store: str, nightly_run_dir: Path, root: Path) -> ServiceHome:
    """Copies of the champion store and of the nightly run folder under `root`."""
    source_db = Path(champion_store.removeprefix("sqlite:///"))
    database = root / "mlflow.db"
    shutil.copy2(source_db, database)
    runs_root = root / "runs"
    run_dir = runs_root / nightly_run_dir.name
    shutil.copytree(nightly_run_dir, run_dir)
    features = pd.read_parquet(run_dir / "features.parquet")
    return ServiceHome(root, f"sqlite:///{database}", database, runs_root, run_dir, features)


# The files every nightly run folder holds (DESIGN.md, `portfolio score`).
OUTPUT_FILES = (
    "scores.parquet",
    "rejected.parquet",
    "features.parquet",
    "portfolio.json",
    "report.html",
    "manifest.json",
)


def run_output_bytes(folder: Path) -> dict[str, bytes]:
    """Every output file's bytes, the manifest without its `timings` (what a rerun must repeat)."""
    files = {}
    for name in OUTPUT_FILES:
        data = (folder / name).read_bytes()
        if name == "manifest.json":
            manifest = json.loads(data)
            assert "timings" in manifest
            manifest.pop("timings")
            data = json.dumps(manifest, sort_keys=True).encode()
        files[name] = data
    return files
