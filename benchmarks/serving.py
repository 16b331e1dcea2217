"""Serving: our BentoML service against `mlflow models serve` and in-process scoring, side by side.

Sets up (or reuses with `--workdir`) a generated portfolio, champions trained
into a local MLflow store and one nightly run, then starts

- (a) our service: `bentoml serve serving.service:PortfolioService` (1 worker);
- (b) `mlflow models serve -m models:/churn@champion --env-manager local` (1 worker),
  the same champion as a pyfunc (a probability only: no reasons, one model);

and, for reference, a bare ASGI app on uvicorn that answers a constant (the
latency floor of this client and server stack on this machine). It measures,
client on this machine (httpx + asyncio):

1. one account per request, sequential: p50 / p99 latency of (a) by id (the
   answer precomputed from the snapshot), (a) what-if (the full feature record
   scored live: both models, reasons, priority and tier) and (b) one record.
   Targets for (a) what-if: p50 <= 2 ms, p99 <= 8 ms;
2. 8 concurrent clients for `--seconds` each: requests/s and errors of (a)
   what-if, (a) by id and (b). Target: (a) what-if >= 2x (b), no errors;
3. one request of 1,000 what-if accounts: rows/s of (a) against (c) the same
   prediction in-process (`serving.scoring.score_records`, both models with
   reasons), and of (b) with 1,000 records. Target: (a) >= 50% of (c).

    uv run python -m benchmarks.serving [--accounts 2000] [--workdir DIR] [--seconds 10]

Results go to benchmarks/results/serving.json and are recorded by hand in
docs/benchmarks.md ("Serving").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from rich.console import Console

from benchmarks.machine import describe_machine
from benchmarks.traffic import PlannedRequest, percentile, run_traffic

logger = logging.getLogger("benchmarks.serving")

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
TARGET_P50_MS = 2.0
TARGET_P99_MS = 8.0
TARGET_THROUGHPUT_RATIO = 2.0
TARGET_BULK_SHARE = 0.5
BULK_ACCOUNTS = 1000
CONCURRENCY = 8
READY_TIMEOUT_SECONDS = 300


# --------------------------------------------------------------------------- setup


def prepare_setup(work: Path, accounts: int, months: int, seed: int, uri: str) -> Path:
    """Generate, train, promote and score once; returns the run folder (reused when present)."""
    run_dir = work / "runs" / "latest"
    if (run_dir / "manifest.json").is_file():
        return run_dir
    from features.sources import load_sources
    from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio
    from serving.batch import run_nightly_job
    from training.pipeline import TrainingSettings, train_from_sources
    from training.tuning import TuningSettings

    logger.info("generating %d accounts x %d months", accounts, months)
    portfolio = generate_portfolio(GeneratorSettings(n_accounts=accounts, months=months, seed=seed))
    sources = write_portfolio(portfolio, work / "portfolio")
    logger.info("training both champions into %s", uri)
    train_from_sources(
        load_sources(sources).tables,
        target="all",
        settings=TrainingSettings(
            tuning=TuningSettings(n_trials=5, timeout_seconds=60), tracking_uri=uri
        ),
    )
    logger.info("running the nightly job")
    return run_nightly_job(sources, out_dir=run_dir).out_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_SECONDS} s; see {log}")


async def floor_app(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
    """A bare ASGI app answering a constant: the latency floor of uvicorn plus this client."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"results":[]}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"14")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- payloads


def feature_records(run_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    features = pd.read_parquet(run_dir / "features.parquet")
    columns = [c for c in features.columns if c not in ("account_id", "as_of")]
    values = features[columns].astype(object).where(features[columns].notna(), None)
    records = [
        {
            k: (v if v is None or isinstance(v, str) else float(v))
            for k, v in zip(columns, row, strict=True)
        }
        for row in values.itertuples(index=False, name=None)
    ]
    return features["account_id"].astype(str).tolist(), records


def _bulk(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [records[i % len(records)] for i in range(n)]


# --------------------------------------------------------------------------- measuring


async def _sequential(url: str, body: bytes, requests: int, warmup: int) -> dict[str, float]:
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(warmup):
            (await client.post(url, content=body, headers=headers)).raise_for_status()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            times.append(time.perf_counter() - started)
            response.raise_for_status()
    times.sort()
    return {
        "requests": requests,
        "p50_ms": round(percentile(times, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(times, 0.99) * 1e3, 3),
        "mean_ms": round(statistics.fmean(times) * 1e3, 3),
    }


async def _concurrent(url: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    base, path = url.rsplit("/", 1)
    plan = [PlannedRequest("one", f"/{path}", body)]
    result = await run_traffic(base, plan, clients, seconds)
    summary = result.summary()
    return {
        "clients": clients,
        "seconds": summary["seconds"],
        "requests": summary["requests"] - summary["errors"],
        "errors": summary["errors"],
        "requests_per_second": summary["requests_per_second"],
        "first_errors": summary["first_errors"],
    }


async def _bulk_rate(url: str, body: bytes, rows: int, repeats: int) -> dict[str, float]:
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=120) as client:
        (await client.post(url, content=body, headers=headers)).raise_for_status()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            times.append(time.perf_counter() - started)
            response.raise_for_status()
    median = statistics.median(times)
    return {
        "rows": rows,
        "median_ms": round(median * 1e3, 2),
        "rows_per_second": round(rows / median),
    }


def _in_process_rate(function: Callable[[], Any], rows: int, repeats: int) -> dict[str, float]:
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "rows": rows,
        "median_ms": round(median * 1e3, 2),
        "rows_per_second": round(rows / median),
    }


def _in_process_latency(function: Callable[[], Any], requests: int) -> dict[str, float]:
    for _ in range(100):
        function()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    times.sort()
    return {
        "p50_ms": round(percentile(times, 0.5) * 1e3, 3),
        "p99_ms": round(percentile(times, 0.99) * 1e3, 3),
    }


# --------------------------------------------------------------------------- the run


def _measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    uri = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri  # this process loads the champions too
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    run_dir = prepare_setup(work, args.accounts, args.months, args.seed, uri)
    ids, records = feature_records(run_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTFOLIO_", "MLFLOW_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": uri,
            "BENTOML_HOME": str(work / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "PORTFOLIO_SNAPSHOT": str(run_dir),
            "PORTFOLIO_MAX_BODY_BYTES": str(16 * 1024 * 1024),
        }
    )
    ours_port, mlflow_port, floor_port = free_port(), free_port(), free_port()
    ours = start_process(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "serving.service:PortfolioService",
            "--host",
            "127.0.0.1",
            "--port",
            str(ours_port),
            "--working-dir",
            str(REPO),
        ],
        env,
        work / "service.log",
    )
    theirs = start_process(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/churn@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "-w",
            "1",
        ],
        env,
        work / "mlflow-serve.log",
    )
    floor = start_process(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.serving:floor_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(floor_port),
            "--log-level",
            "warning",
        ],
        env,
        work / "floor.log",
    )
    try:
        ours_url, mlflow_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{mlflow_port}"
        floor_url = f"http://127.0.0.1:{floor_port}"
        wait_ready(f"{ours_url}/readyz", ours, work / "service.log")
        wait_ready(f"{mlflow_url}/health", theirs, work / "mlflow-serve.log")
        wait_ready(f"{floor_url}/", floor, work / "floor.log")
        return _run_measurements(args, uri, run_dir, ids, records, ours_url, mlflow_url, floor_url)
    finally:
        stop_process(ours)
        stop_process(theirs)
        stop_process(floor)


def _run_measurements(
    args: argparse.Namespace,
    uri: str,
    run_dir: Path,
    ids: list[str],
    records: list[dict[str, Any]],
    ours_url: str,
    mlflow_url: str,
    floor_url: str,
) -> dict[str, Any]:
    from serving.scoring import score_records
    from training.registry import load_champion

    churn, upsell = load_champion("churn", uri=uri), load_champion("upsell", uri=uri)
    churn_features = list(churn.model.feature_names_)
    record = records[0]
    by_id = json.dumps({"accounts": [{"account_id": ids[0]}]}).encode()
    what_if = json.dumps({"accounts": [{"account_id": "what-if", "features": record}]}).encode()
    mlflow_one = json.dumps(
        {"dataframe_records": [{k: record.get(k) for k in churn_features}]}
    ).encode()
    bulk_records = _bulk(records, BULK_ACCOUNTS)
    ours_bulk = json.dumps(
        {"accounts": [{"account_id": f"w{i}", "features": r} for i, r in enumerate(bulk_records)]}
    ).encode()
    mlflow_bulk = json.dumps(
        {"dataframe_records": [{k: r.get(k) for k in churn_features} for r in bulk_records]}
    ).encode()
    score, invocations = f"{ours_url}/score", f"{mlflow_url}/invocations"
    n, warm = args.requests, 200

    result: dict[str, Any] = {
        "bodies_bytes": {"what_if_1": len(what_if), "what_if_1000": len(ours_bulk)}
    }
    logger.info("sequential latency")
    result["sequential"] = {
        "floor": asyncio.run(_sequential(f"{floor_url}/score", by_id, n, warm)),
        "ours_by_id": asyncio.run(_sequential(score, by_id, n, warm)),
        "ours_what_if": asyncio.run(_sequential(score, what_if, n, warm)),
        "mlflow_serve": asyncio.run(_sequential(invocations, mlflow_one, n, warm)),
    }
    one = [{"account_id": "what-if", **record}]
    result["sequential"]["in_process_score_records"] = _in_process_latency(
        lambda: score_records(one, churn, upsell, top_k=3), n
    )
    logger.info("%d concurrent clients", CONCURRENCY)
    result["concurrent"] = {
        "ours_what_if": asyncio.run(_concurrent(score, what_if, CONCURRENCY, args.seconds)),
        "ours_by_id": asyncio.run(_concurrent(score, by_id, CONCURRENCY, args.seconds)),
        "mlflow_serve": asyncio.run(
            _concurrent(invocations, mlflow_one, CONCURRENCY, args.seconds)
        ),
    }
    logger.info("1,000-account requests")
    rows = [{"account_id": f"w{i}", **r} for i, r in enumerate(bulk_records)]
    result["bulk"] = {
        "ours_what_if": asyncio.run(_bulk_rate(score, ours_bulk, BULK_ACCOUNTS, args.repeats)),
        "mlflow_serve": asyncio.run(
            _bulk_rate(invocations, mlflow_bulk, BULK_ACCOUNTS, args.repeats)
        ),
        "in_process_score_records": _in_process_rate(
            lambda: score_records(rows, churn, upsell, top_k=3), BULK_ACCOUNTS, args.repeats
        ),
    }
    ours_rps = result["concurrent"]["ours_what_if"]["requests_per_second"]
    mlflow_rps = result["concurrent"]["mlflow_serve"]["requests_per_second"]
    ours_rows = result["bulk"]["ours_what_if"]["rows_per_second"]
    direct_rows = result["bulk"]["in_process_score_records"]["rows_per_second"]
    what_if_latency = result["sequential"]["ours_what_if"]
    result["targets"] = {
        "p50_ms": {
            "value": what_if_latency["p50_ms"],
            "target": TARGET_P50_MS,
            "met": what_if_latency["p50_ms"] <= TARGET_P50_MS,
        },
        "p99_ms": {
            "value": what_if_latency["p99_ms"],
            "target": TARGET_P99_MS,
            "met": what_if_latency["p99_ms"] <= TARGET_P99_MS,
        },
        "throughput_vs_mlflow": {
            "value": round(ours_rps / mlflow_rps, 2),
            "target": TARGET_THROUGHPUT_RATIO,
            "met": ours_rps >= TARGET_THROUGHPUT_RATIO * mlflow_rps
            and result["concurrent"]["ours_what_if"]["errors"] == 0,
        },
        "bulk_share_of_in_process": {
            "value": round(ours_rows / direct_rows, 3),
            "target": TARGET_BULK_SHARE,
            "met": ours_rows >= TARGET_BULK_SHARE * direct_rows,
        },
    }
    return result


def _markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    seq, conc, bulk = result["sequential"], result["concurrent"], result["bulk"]
    lines = [
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), {machine['date']}, "
        f"load average before the run {machine['load_average_before']:.2f}; "
        f"{result['accounts']:,} generated accounts",
        "",
        "| one account per request, sequential | p50 | p99 |",
        "|---|---:|---:|",
    ]
    names = {
        "floor": "floor: a bare ASGI app on uvicorn answering a constant (same client)",
        "ours_by_id": "(a) our service, by id",
        "ours_what_if": "(a) our service, what-if record (both models, reasons, priority, tier)",
        "mlflow_serve": "(b) mlflow models serve, one record (churn probability only)",
        "in_process_score_records": "(c) in-process score_records (both models, reasons)",
    }
    for key, row in seq.items():
        lines.append(f"| {names[key]} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms |")
    lines += ["", f"| {CONCURRENCY} concurrent clients | requests/s | errors |", "|---|---:|---:|"]
    for key, row in conc.items():
        lines.append(f"| {names[key]} | {row['requests_per_second']:,.0f} | {row['errors']} |")
    lines += [
        "",
        f"| {BULK_ACCOUNTS:,} accounts in one request | median | rows/s |",
        "|---|---:|---:|",
    ]
    bulk_names = {
        **names,
        "ours_what_if": "(a) our service, 1,000 what-if records",
        "mlflow_serve": "(b) mlflow models serve, 1,000 records (churn probability only)",
    }
    for key, row in bulk.items():
        lines.append(
            f"| {bulk_names[key]} | {row['median_ms']:.1f} ms | {row['rows_per_second']:,} |"
        )
    lines += ["", "| target | measured | target | met |", "|---|---:|---:|---|"]
    for key, row in result["targets"].items():
        lines.append(
            f"| {key} | {row['value']} | {row['target']} | {'yes' if row['met'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000, help="generated accounts")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per case")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per concurrent case")
    parser.add_argument("--repeats", type=int, default=15, help="1,000-account requests per case")
    parser.add_argument("--workdir", type=Path, help="reuse (or create) this setup folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    machine = describe_machine()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = _measure(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
            result = _measure(args, Path(tmp))
    result = {"accounts": args.accounts, "machine": machine, **result}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    Console().print(_markdown(result), markup=False, highlight=False, soft_wrap=True)
    return result


if __name__ == "__main__":
    main()
