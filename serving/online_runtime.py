"""Keeping the online service's scoring state current: load, warm up, hot-swap.

The state the handlers read (both champions, the feature snapshot, the
precomputed answers) is one immutable object behind one reference. A
background thread asks a `StateSource` every `reload_seconds` what the current
state *should* be (the `@champion` versions and the latest snapshot, a
`StateKey`); when that differs from what is served it loads the new state,
warms it up, and swaps the reference in a single assignment. A request reads
the reference once and uses that object to the end, so requests in flight
during a swap finish on the state they started with and none is dropped. When
loading fails the old state keeps serving and the reason is logged; while
nothing could be loaded yet, the service is not ready and loading is retried
every `retry_seconds`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)


class ServedState(Protocol):
    """What the runtime needs from a loaded state."""

    @property
    def key(self) -> Hashable: ...


S = TypeVar("S", bound=ServedState)


class StateSource(Protocol[S]):
    """Where states come from (the MLflow registry and the runs folder, in production)."""

    def current_key(self) -> Hashable:
        """What the served state should be now (cheap: versions and a snapshot fingerprint)."""
        ...

    def load(self, key: Hashable, previous: S | None) -> S:
        """Load and warm up the state for `key` (may reuse parts of `previous`); raise on failure."""
        ...


@dataclass(frozen=True)
class RefreshOutcome:
    """What one refresh did."""

    swapped: bool
    key: Hashable | None
    error: str | None = None


class ScoringRuntime(Generic[S]):
    """Owns the served state and the background thread that keeps it current."""

    def __init__(self, source: StateSource[S], reload_seconds: float, retry_seconds: float) -> None:
        self._source = source
        self._reload_seconds = reload_seconds
        self._retry_seconds = retry_seconds
        self._state: S | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._first_check_done = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.swaps = 0

    @property
    def state(self) -> S | None:
        """The state to serve now (None until the first load succeeded)."""
        return self._state

    @property
    def ready(self) -> bool:
        return self._state is not None

    def refresh(self) -> RefreshOutcome:
        """Check the source once; load and swap when the wanted state changed."""
        with self._refresh_lock:
            served = self._state
            try:
                key = self._source.current_key()
            except Exception as exc:
                return self._failed(None, f"cannot check the champion models and snapshot: {exc}")
            finally:
                self.last_check = time.time()
            if served is not None and served.key == key:
                if self.last_error is not None:
                    logger.info(
                        "the champion models and snapshot are reachable again; serving %s", key
                    )
                self.last_error = None
                return RefreshOutcome(swapped=False, key=key)
            started = time.perf_counter()
            try:
                new_state = self._source.load(key, served)
            except Exception as exc:
                keeping = "keeping the served state" if served is not None else "not ready yet"
                logger.debug("loading %s failed", key, exc_info=True)
                return self._failed(key, f"loading {key} failed ({keeping}): {exc}")
            self._state = new_state  # the swap: one reference assignment
            self.swaps += 1
            self.last_error = None
            logger.info(
                "serving %s (loaded in %.2f s, replaced %s)",
                new_state.key,
                time.perf_counter() - started,
                served.key if served is not None else "nothing",
            )
            return RefreshOutcome(swapped=True, key=new_state.key)

    def _failed(self, key: Hashable | None, message: str) -> RefreshOutcome:
        if message != self.last_error:
            logger.warning(message)
        self.last_error = message
        return RefreshOutcome(swapped=False, key=key, error=message)

    def start(self) -> None:
        """Start the background loop (first check immediately)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="portfolio-state-refresh", daemon=True
        )
        self._thread.start()

    def wait_first_check(self, timeout: float) -> bool:
        """Block until the first refresh ended (loaded, or failed and logged); False on timeout.

        The service calls this before it accepts connections, so a (re)started
        worker does not answer 503 for the seconds its first load takes while
        the registry is reachable, and still starts (not ready) when it is not.
        """
        return self._first_check_done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # never let the refresh thread die
                logger.exception("unexpected error while refreshing the scoring state")
            self._first_check_done.set()
            wait = self._reload_seconds if self.ready else self._retry_seconds
            self._stop.wait(wait)


def drain_on_sigterm(seconds: float, on_drain: Callable[[], None]) -> bool:
    """On SIGTERM: call `on_drain` (e.g. readiness off), keep serving `seconds`, then stop.

    Wraps the SIGTERM handler the web server installed (uvicorn's: stop
    accepting, close idle keep-alive connections, finish the requests in
    progress). Without the delay, a request a client has just sent on an idle
    keep-alive connection can be cut off unanswered when that connection is
    closed; with it, every request that reached the worker before the signal is
    answered, and load balancers watching `/readyz` stop sending meanwhile. A
    second SIGTERM stops at once. Returns False (nothing installed) outside the
    main thread or when no handler is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    server_handler = signal.getsignal(signal.SIGTERM)
    if not callable(server_handler):
        return False
    state = {"draining": False}

    def handle(signum: int, frame: object) -> None:
        if state["draining"] or seconds <= 0:
            server_handler(signum, frame)
            return
        state["draining"] = True
        on_drain()
        logger.info(
            "SIGTERM: draining for %.1f s (not ready, still answering), then stopping", seconds
        )
        timer = threading.Timer(seconds, server_handler, args=(signum, frame))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, handle)
    return True
