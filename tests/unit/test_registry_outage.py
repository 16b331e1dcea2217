"""An unreachable registry is an error, not a missing champion."""

from __future__ import annotations

import socket

import pytest
from mlflow.exceptions import MlflowException

from training.registry import champion_version


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_tracking_server_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = _closed_port()
    with pytest.raises(MlflowException, match=f"127.0.0.1:{port}"):
        champion_version("churn", uri=f"http://127.0.0.1:{port}")
