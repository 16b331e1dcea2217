"""`drain_on_sigterm`: readiness off at once, the server's own handler only after the delay."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from serving.online_runtime import drain_on_sigterm


@pytest.fixture
def server_handler():
    calls: list[float] = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(time.monotonic()))
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, original)


def test_the_server_stops_only_after_the_drain(server_handler) -> None:
    drained: list[float] = []
    assert drain_on_sigterm(0.3, lambda: drained.append(time.monotonic()))
    sent = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert len(drained) == 1 and server_handler == []
    deadline = time.monotonic() + 5
    while not server_handler and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server_handler) == 1
    assert server_handler[0] - sent >= 0.3


def test_a_second_sigterm_stops_at_once(server_handler) -> None:
    drained: list[float] = []
    drain_on_sigterm(30.0, lambda: drained.append(time.monotonic()))
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert server_handler == []
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert len(server_handler) == 1 and len(drained) == 1


def test_no_drain_passes_the_signal_straight_on(server_handler) -> None:
    drain_on_sigterm(0.0, lambda: None)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert len(server_handler) == 1


def test_nothing_is_installed_outside_the_main_thread(server_handler) -> None:
    installed: list[bool] = []
    thread = threading.Thread(target=lambda: installed.append(drain_on_sigterm(1.0, lambda: None)))
    thread.start()
    thread.join()
    assert installed == [False]
