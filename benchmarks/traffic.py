"""Concurrent HTTP traffic against a service, one sample per request (asyncio + httpx).

`run_traffic` keeps `clients` keep-alive connections busy for `seconds`, each
client cycling through a plan of requests from its own starting point, and
records every request: when it started and ended, its status (or the
transport error) and the churn model version in a `/score` answer. Timed
actions (a champion promotion, a signal to the server) run in a thread at
given offsets while the traffic goes on; their times are recorded on the same
clock, so samples can be split into before and after.

Used by `benchmarks.serving` (8 clients, one body), `benchmarks.load` (a mix
of requests at 8 and 32 clients with a champion swap) and the load and fault
tests under tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class PlannedRequest:
    """One request of a traffic plan: a label for the figures, the path and the JSON body."""

    label: str
    path: str
    body: bytes


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it (times in seconds since the traffic started)."""

    label: str
    started: float
    finished: float
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout)
    error: str | None  # why the request failed; None when it succeeded
    version: str | None  # churn_model_version of a /score answer

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class TimedAction:
    """`action` runs (in a thread) `at` seconds after the traffic started."""

    at: float
    name: str
    action: Callable[[], Any]


@dataclass(frozen=True)
class ActionRecord:
    name: str
    started: float
    finished: float
    result: Any


@dataclass
class TrafficResult:
    """Every sample of a run, the actions taken, and figures derived from them."""

    clients: int
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    actions: dict[str, ActionRecord] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def latencies(self, label: str | None = None) -> list[float]:
        """Sorted latencies (s) of the successful requests (of one label)."""
        return sorted(
            s.finished - s.started
            for s in self.samples
            if s.ok and (label is None or s.label == label)
        )

    def summary(self) -> dict[str, Any]:
        """Requests/s (successful answers), p50/p99 latency, errors and the first error texts."""
        times = self.latencies()
        ok = len(times)
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "errors": self.requests - ok,
            "requests_per_second": round(ok / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(times, 0.50) * 1e3, 2) if times else None,
            "p99_ms": round(percentile(times, 0.99) * 1e3, 2) if times else None,
            "by_label": {
                label: len([s for s in self.samples if s.label == label])
                for label in sorted({s.label for s in self.samples})
            },
            "first_errors": [s.error for s in self.failed[:3]],
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile of values sorted ascending."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def _answer_check(
    request: PlannedRequest, response: httpx.Response
) -> tuple[str | None, str | None]:
    """(error, churn version) of an answer: any non-200, or a /score result that is an error."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}", None
    if request.path != "/score":
        return None, None
    results = json.loads(response.content)["results"]
    failed = [r for r in results if "error" in r]
    if failed:
        return f"result error: {failed[0]['error'][:200]}", None
    version = results[0].get("churn_model_version") if results else None
    return None, None if version is None else str(version)


async def run_traffic(
    base_url: str,
    plan: Sequence[PlannedRequest],
    clients: int,
    seconds: float,
    *,
    headers: dict[str, str] | None = None,
    warmup_requests: int = 20,
    actions: Sequence[TimedAction] = (),
    timeout: float = 60.0,
) -> TrafficResult:
    """`clients` concurrent clients sending `plan` (cycled) to `base_url` for `seconds`.

    Nothing is retried: a refused or reset connection is a failed sample.
    Warm-up requests (before the clock starts) are not recorded.
    """
    if not plan:
        raise ValueError("the traffic plan is empty")
    send_headers = {**JSON_HEADERS, **(headers or {})}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    result = TrafficResult(clients=clients, seconds=seconds)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
        for i in range(warmup_requests):
            request = plan[i % len(plan)]
            await client.post(request.path, content=request.body, headers=send_headers)
        origin = time.perf_counter()
        deadline = origin + seconds

        async def one_client(offset: int) -> None:
            position = offset
            while time.perf_counter() < deadline:
                request = plan[position % len(plan)]
                position += 1
                started = time.perf_counter()
                try:
                    response = await client.post(
                        request.path, content=request.body, headers=send_headers
                    )
                    error, version = _answer_check(request, response)
                    status: int | None = response.status_code
                except httpx.HTTPError as exc:
                    error, version, status = f"{type(exc).__name__}: {exc}", None, None
                result.samples.append(
                    Sample(
                        label=request.label,
                        started=started - origin,
                        finished=time.perf_counter() - origin,
                        status=status,
                        error=error,
                        version=version,
                    )
                )
                if status is None:
                    await asyncio.sleep(0.01)  # no server: do not spin

        async def timed(action: TimedAction) -> None:
            await asyncio.sleep(max(0.0, origin + action.at - time.perf_counter()))
            started = time.perf_counter() - origin
            value = await asyncio.to_thread(action.action)
            result.actions[action.name] = ActionRecord(
                action.name, started, time.perf_counter() - origin, value
            )

        step = max(1, len(plan) // clients)
        await asyncio.gather(
            *(one_client(i * step) for i in range(clients)), *(timed(a) for a in actions)
        )
    result.samples.sort(key=lambda s: s.started)
    result.seconds = max((s.finished for s in result.samples), default=seconds)
    return result
