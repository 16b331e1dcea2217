"""Hot swap of the served state: atomic, failure-tolerant, retried."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from serving.online_runtime import ScoringRuntime


@dataclass(frozen=True)
class _State:
    key: tuple[str, str]


class _Source:
    """A source whose wanted key and failures the test controls."""

    def __init__(self) -> None:
        self.key = ("v1", "v1")
        self.fail_check: Exception | None = None
        self.fail_load: Exception | None = None
        self.loads: list[tuple[str, str]] = []

    def current_key(self):
        if self.fail_check is not None:
            raise self.fail_check
        return self.key

    def load(self, key, previous):
        if self.fail_load is not None:
            raise self.fail_load
        self.loads.append(key)
        return _State(key)


def test_not_ready_until_first_load_then_no_reload_for_same_key():
    source = _Source()
    runtime = ScoringRuntime(source, reload_seconds=30, retry_seconds=5)
    assert not runtime.ready and runtime.state is None
    first = runtime.refresh()
    assert first.swapped and runtime.ready
    assert runtime.refresh().swapped is False
    assert source.loads == [("v1", "v1")]


def test_new_key_swaps_and_a_held_reference_stays_valid():
    source = _Source()
    runtime = ScoringRuntime(source, reload_seconds=30, retry_seconds=5)
    runtime.refresh()
    held = runtime.state  # what an in-flight request holds
    source.key = ("v2", "v1")
    assert runtime.refresh().swapped
    assert runtime.state.key == ("v2", "v1")
    assert held.key == ("v1", "v1")
    assert runtime.swaps == 2


def test_failed_load_keeps_serving_the_old_state_and_logs_why(caplog):
    source = _Source()
    runtime = ScoringRuntime(source, reload_seconds=30, retry_seconds=5)
    runtime.refresh()
    source.key = ("v2", "v1")
    source.fail_load = RuntimeError("booster file missing")
    with caplog.at_level(logging.WARNING, logger="serving.online_runtime"):
        outcome = runtime.refresh()
    assert not outcome.swapped
    assert runtime.state.key == ("v1", "v1")
    assert "booster file missing" in runtime.last_error
    assert "keeping the served state" in caplog.text
    source.fail_load = None
    assert runtime.refresh().swapped
    assert runtime.last_error is None


def test_unreachable_registry_at_start_means_not_ready_with_a_reason():
    source = _Source()
    source.fail_check = ConnectionError("tracking server at http://127.0.0.1:1 refused")
    runtime = ScoringRuntime(source, reload_seconds=30, retry_seconds=5)
    outcome = runtime.refresh()
    assert not runtime.ready
    assert "refused" in outcome.error


def test_background_loop_retries_until_the_source_recovers():
    source = _Source()
    source.fail_check = ConnectionError("down")
    runtime = ScoringRuntime(source, reload_seconds=30, retry_seconds=0.05)
    runtime.start()
    try:
        time.sleep(0.2)
        assert not runtime.ready
        source.fail_check = None
        deadline = time.time() + 5
        while not runtime.ready and time.time() < deadline:
            time.sleep(0.02)
        assert runtime.ready
    finally:
        runtime.stop()


def test_concurrent_refreshes_load_once():
    source = _Source()
    slow_load = source.load

    def load(key, previous):
        time.sleep(0.05)
        return slow_load(key, previous)

    source.load = load
    runtime = ScoringRuntime(source, reload_seconds=30, retry_seconds=5)
    threads = [threading.Thread(target=runtime.refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.loads == [("v1", "v1")]
