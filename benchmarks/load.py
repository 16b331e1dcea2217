"""Load: the service under a mix of requests at 8 and 32 clients, with a champion swap in each.

Sets up (or reuses with `--workdir`) the same generated portfolio, champions
and nightly run as `benchmarks.serving`, registers two more versions of the
churn model (copies of the champion's artifacts), starts
`bentoml serve serving.service:PortfolioService` on 127.0.0.1 polling the
registry every second, then for each level runs `--seconds` of traffic
(`benchmarks.traffic`, nothing retried) while, half-way through, the next
churn version is promoted with `training.registry.promote`. The mix cycles:
by id (1 account), what-if (1 full feature record), by id (10 accounts),
`/portfolio` (whole and filtered by segment).

Per level it reports requests/s, p50/p99 latency and errors, and when the
first answer carried the new version. Targets: no failed request, and no
answer of the old version once the new one was seen.

    uv run python -m benchmarks.load [--seconds 60] [--clients 8 32] [--workdir DIR]

Results go to benchmarks/results/load.json; figures are recorded by hand in
docs/benchmarks.md ("Load"). The same functions drive tests/integration/test_load.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.machine import describe_machine
from benchmarks.traffic import PlannedRequest, TimedAction, TrafficResult, run_traffic

logger = logging.getLogger("benchmarks.load")

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
LEVELS = (8, 32)
SWAP_ACTION = "promote"


def traffic_plan(
    ids: Sequence[str], records: Sequence[dict[str, Any]], segment: str | None
) -> list[PlannedRequest]:
    """The request mix: by id, what-if, by id x10, by id, what-if, /portfolio (whole, segment)."""
    if not ids or not records:
        raise ValueError("the snapshot has no accounts to ask about")
    plan: list[PlannedRequest] = []
    for i in range(max(len(ids), 1)):
        account, record = ids[i % len(ids)], records[i % len(records)]
        batch = [{"account_id": ids[(i + k) % len(ids)]} for k in range(10)]
        plan += [
            _score("by id", [{"account_id": account}]),
            _score("what-if", [{"account_id": f"what-if-{i}", "features": record}]),
            _score("by id x10", batch),
        ]
        if i % 4 == 0:
            plan.append(PlannedRequest("portfolio", "/portfolio", b"{}"))
        if i % 8 == 4 and segment is not None:
            body = json.dumps({"segment": segment}).encode()
            plan.append(PlannedRequest("portfolio", "/portfolio", body))
        if len(plan) >= 400:
            break
    return plan


def _score(label: str, accounts: list[dict[str, Any]]) -> PlannedRequest:
    return PlannedRequest(label, "/score", json.dumps({"accounts": accounts}).encode())


def register_copy(tracking_uri: str, target: str, of_version: str = "1") -> str:
    """A new registered version of `target` with the artifacts of `of_version`; its number."""
    from mlflow.tracking import MlflowClient

    from training.tracking import registered_model_name

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = registered_model_name(target)
    original = client.get_model_version(name, of_version)
    created = client.create_model_version(name, original.source, run_id=original.run_id)
    return str(created.version)


def promotion(tracking_uri: str, target: str, version: str, at: float) -> TimedAction:
    """Promote `version` of `target` to @champion `at` seconds into the traffic."""
    from training.registry import promote

    def act() -> str:
        promote(target, version, "load test: swap under traffic", uri=tracking_uri)
        return version

    return TimedAction(at, SWAP_ACTION, act)


@dataclass(frozen=True)
class SwapOutcome:
    """What the answers said about a swap from `old` to `new`."""

    old: str
    new: str
    promoted_at: float | None  # when promote() was called, seconds into the traffic
    first_new_at: float | None  # when the first answer of `new` arrived
    old_after_new: int  # answers of `old` to requests started after first_new_at
    other_versions: tuple[str, ...]

    @property
    def switch_seconds(self) -> float | None:
        if self.promoted_at is None or self.first_new_at is None:
            return None
        return self.first_new_at - self.promoted_at


def swap_outcome(result: TrafficResult, old: str, new: str) -> SwapOutcome:
    """Where the versions in the answers changed from `old` to `new`."""
    versioned = [s for s in result.samples if s.ok and s.version is not None]
    first_new = min((s.finished for s in versioned if s.version == new), default=None)
    old_after = (
        0
        if first_new is None
        else sum(1 for s in versioned if s.version == old and s.started > first_new)
    )
    others = tuple(sorted({s.version for s in versioned} - {old, new}))
    action = result.actions.get(SWAP_ACTION)
    return SwapOutcome(old, new, action.started if action else None, first_new, old_after, others)


def level_figures(result: TrafficResult, swap: SwapOutcome | None) -> dict[str, Any]:
    """One row of the table: the traffic summary and the swap."""
    figures = result.summary()
    if swap is not None:
        figures["swap"] = {
            "from": swap.old,
            "to": swap.new,
            "promoted_at_s": None if swap.promoted_at is None else round(swap.promoted_at, 2),
            "first_new_answer_after_s": (
                None if swap.switch_seconds is None else round(swap.switch_seconds, 2)
            ),
            "old_answers_after_first_new": swap.old_after_new,
        }
    return figures


def run_level(
    url: str,
    plan: Sequence[PlannedRequest],
    clients: int,
    seconds: float,
    tracking_uri: str,
    old: str,
    new: str,
) -> tuple[TrafficResult, SwapOutcome]:
    """`seconds` of traffic with `clients` clients; churn `new` promoted half-way."""
    action = promotion(tracking_uri, "churn", new, seconds / 2)
    result = asyncio.run(run_traffic(url, plan, clients, seconds, actions=[action]))
    return result, swap_outcome(result, old, new)


# --------------------------------------------------------------------------- the benchmark


def _measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import pandas as pd

    from benchmarks.serving import (
        feature_records,
        free_port,
        prepare_setup,
        start_process,
        stop_process,
        wait_ready,
    )
    from training.registry import champion_version

    uri = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    run_dir = prepare_setup(work, args.accounts, args.months, args.seed, uri)
    ids, records = feature_records(run_dir)
    segments = pd.read_parquet(run_dir / "features.parquet")["segment"].dropna()
    plan = traffic_plan(ids, records, str(segments.iloc[0]) if len(segments) else None)
    current = champion_version("churn", uri=uri)
    assert current is not None
    versions = [current] + [register_copy(uri, "churn", current) for _ in args.clients]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTFOLIO_", "MLFLOW_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": uri,
            "BENTOML_HOME": str(work / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "PORTFOLIO_SNAPSHOT": str(run_dir),
            "PORTFOLIO_RELOAD_SECONDS": "1",
        }
    )
    port = free_port()
    log = work / "load-service.log"
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:PortfolioService"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--working-dir", str(REPO)]
    service = start_process(command, env, log)
    url = f"http://127.0.0.1:{port}"
    levels = []
    try:
        wait_ready(f"{url}/readyz", service, log)
        for i, clients in enumerate(args.clients):
            old, new = versions[i], versions[i + 1]
            logger.info("%d clients for %.0f s, churn v%s -> v%s", clients, args.seconds, old, new)
            result, swap = run_level(url, plan, clients, args.seconds, uri, old, new)
            levels.append(level_figures(result, swap))
    finally:
        stop_process(service)
    return {"plan_requests": len(plan), "levels": levels}


def _markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), {machine['date']}, load average "
        f"{machine['load_average_before']:.2f} before, {result['load_average_after']:.2f} after; "
        f"{result['accounts']:,} generated accounts",
        "",
        "| clients | seconds | requests | requests/s | p50 | p99 | errors "
        "| swap: first new answer after | old answers after the first new |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in result["levels"]:
        swap = level.get("swap", {})
        lines.append(
            f"| {level['clients']} | {level['seconds']:.1f} | {level['requests']:,} "
            f"| {level['requests_per_second']:,.0f} | {level['p50_ms']:.2f} ms "
            f"| {level['p99_ms']:.2f} ms | {level['errors']} "
            f"| {swap.get('first_new_answer_after_s')} s | {swap.get('old_answers_after_first_new')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000, help="generated accounts")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per level")
    parser.add_argument("--clients", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--workdir", type=Path, help="reuse (or create) this setup folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    machine = describe_machine()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = _measure(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
            result = _measure(args, Path(tmp))
    result = {
        "accounts": args.accounts,
        "machine": machine,
        "load_average_after": os.getloadavg()[0],
        **result,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    Console().print(_markdown(result), markup=False, highlight=False, soft_wrap=True)
    return result


if __name__ == "__main__":
    main()
