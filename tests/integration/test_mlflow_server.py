"""Train against a real `mlflow server` (SQLite backend, local artifact store) and load the champion."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READY_TIMEOUT_SECONDS = 180


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"mlflow server not ready after {READY_TIMEOUT_SECONDS}s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = tmp_path / "server.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def _table(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer": [f"C{i:05d}" for i in range(n)],
            "usage": rng.normal(size=n),
            "tickets": rng.poisson(2, size=n),
            "plan": rng.choice(["basic", "pro", "enterprise"], size=n),
        }
    )
    logit = -1.0 - 1.3 * frame["usage"] + 0.3 * frame["tickets"] + (frame["plan"] == "basic")
    frame["churned"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    return frame


def test_train_against_server_and_load_champion(mlflow_server, monkeypatch, tmp_path):
    import mlflow

    from training.pipeline import TrainingSettings, score_table, train_from_table
    from training.registry import load_champion
    from training.tuning import TuningSettings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("PORTFOLIO_MODEL_PREFIX", raising=False)
    frame = _table()
    settings = TrainingSettings(tuning=TuningSettings(n_trials=2, timeout_seconds=None, cv_folds=3))
    result = train_from_table(frame, "customer", "churned", "churn", settings)
    churn = result.targets["churn"]
    assert churn.model_version == "1" and churn.promoted
    assert result.tracking_uri == mlflow_server

    rows = frame.drop(columns=["churned"]).head(20)
    features = rows.drop(columns=["customer"])
    expected = churn.model.predict_proba(features)

    champion = load_champion("churn")
    assert champion.version == "1" and champion.run_id == churn.logged.run_id
    np.testing.assert_allclose(champion.model.predict_proba(features), expected, atol=1e-12)

    mlflow.set_tracking_uri(mlflow_server)  # the registry follows the tracking URI
    pyfunc = mlflow.pyfunc.load_model("models:/churn@champion")
    np.testing.assert_allclose(np.asarray(pyfunc.predict(features)), expected, atol=1e-12)

    scores = score_table(rows, "customer")
    assert list(scores.columns) == ["account_id", "p_churn", "churn_model_version"]
    np.testing.assert_allclose(scores["p_churn"], expected, atol=1e-12)

    downloaded = Path(
        mlflow.artifacts.download_artifacts("models:/churn@champion", dst_path=str(tmp_path / "dl"))
    )
    assert (downloaded / "artifacts" / "calibrated_model" / "booster.txt").is_file()
    assert not list(downloaded.rglob("*.pkl"))
    assert not list((tmp_path / "server-artifacts").rglob("*.pkl"))
