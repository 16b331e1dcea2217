"""Nightly job benchmark: the whole `portfolio score --sources` run on a generated portfolio.

    uv run python -m benchmarks.batch                      # 100,000 accounts
    uv run python -m benchmarks.batch --accounts 1000000   # the scale run

A portfolio above 100,000 accounts is generated in shards of at most 100,000
accounts (`features.synthetic.generate_and_write_shards`: one shard in memory
at a time, each table as `<table>/part-*.parquet` read through one glob), and
the job loads it in partitions of the accounts (`--partitions`, default: from
the size of the sources; see `serving.partitions`).

Steps (only step 3 is the job; the others prepare it or measure beside it):

1. train churn and upsell champions on a small generated portfolio (same
   generator, so the same feature set) into a temporary MLflow store;
2. generate the benchmark portfolio and write it as Parquet + sources.yaml;
3. run `portfolio score --sources ... --out ...` in a child process, as a
   scheduler would: wall time and peak memory of the process (imports, load,
   features, scoring with reasons, portfolio analytics, drift, report, atomic
   write), and the job's own stage timings from `manifest.json`;
4. side by side on the run's feature snapshot: the scoring stage
   (`serving.scoring.score_accounts`, both models, top-3 reasons each) and,
   without reasons, against calling the two LightGBM boosters directly on
   the same prepared matrix (the limit).

Figures go to stdout as a Markdown table and to `benchmarks/results/` as JSON;
docs/benchmarks.md ("Nightly job") records them by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from benchmarks.machine import describe_machine

logger = logging.getLogger("benchmarks.batch")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _train_champions(train_accounts: int, months: int, seed: int, work: Path, uri: str) -> dict:
    from features.sources import load_sources
    from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio
    from training.pipeline import TrainingSettings, train_from_sources
    from training.tuning import TuningSettings

    started = time.perf_counter()
    portfolio = generate_portfolio(
        GeneratorSettings(n_accounts=train_accounts, months=months, seed=seed + 1)
    )
    sources = write_portfolio(portfolio, work / "training-portfolio")
    tables = load_sources(sources).tables
    result = train_from_sources(
        tables,
        target="all",
        settings=TrainingSettings(
            tuning=TuningSettings(n_trials=5, timeout_seconds=60), tracking_uri=uri
        ),
    )
    return {
        "accounts": train_accounts,
        "seconds": round(time.perf_counter() - started, 1),
        "versions": {t: r.model_version for t, r in result.targets.items()},
        "roc_auc": {t: round(r.metrics["roc_auc"], 4) for t, r in result.targets.items()},
    }


# Accounts per generated shard: about 2 GB of memory while a shard is simulated.
SHARD_ACCOUNTS = 100_000


def _generate(
    accounts: int, months: int, seed: int, folder: Path, shards: int
) -> tuple[Path, dict]:
    from features.synthetic import GeneratorSettings, generate_and_write, generate_and_write_shards

    started = time.perf_counter()
    settings = GeneratorSettings(n_accounts=accounts, months=months, seed=seed)
    if shards > 1:
        result = generate_and_write_shards(settings, shards, folder)
    else:
        result = generate_and_write(settings, folder)
    return result.sources_path, {
        "seconds": round(time.perf_counter() - started, 1),
        "shards": shards,
        "rows": {k: int(v) for k, v in result.row_counts.items() if k != "ground_truth"},
    }


def _existing(folder: Path) -> tuple[Path, dict]:
    """An already generated portfolio: its sources.yaml and rows per table."""
    from features.sources import read_sources_config
    from serving.partitions import estimated_source_rows

    sources = folder / "sources.yaml"
    rows = estimated_source_rows(read_sources_config(sources), folder.resolve())
    return sources, {"seconds": None, "existing": str(folder), "rows": rows}


LIGHT_JOB = (
    "import sys; from serving.batch import NightlyJobSettings, run_nightly_job; "
    "partitions = int(sys.argv[3]) if len(sys.argv) > 3 else None; "
    "run_nightly_job(sys.argv[1], out_dir=sys.argv[2], "
    "settings=NightlyJobSettings(allocate=False, partitions=partitions))"
)


def _run_job(
    sources: Path,
    out: Path,
    env: dict[str, str],
    log: Path,
    allocate: bool = True,
    partitions: int | None = None,
) -> dict[str, Any]:
    """Run the job in a child process: the CLI, or (allocate=False) the library call."""
    if allocate:
        command = [
            sys.executable,
            "-c",
            "from serving.cli import main; main()",
            "score",
            "--sources",
            str(sources),
            "--out",
            str(out),
        ]
        if partitions is not None:
            command += ["--partitions", str(partitions)]
    else:
        command = [sys.executable, "-c", LIGHT_JOB, str(sources), str(out)]
        if partitions is not None:
            command.append(str(partitions))
    started = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"the job exited {process.returncode}; see {log}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "wall_seconds": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "job_seconds": manifest["timings"]["total_seconds"],
        "stages_seconds": manifest["timings"]["stages_seconds"],
        "row_counts": manifest["row_counts"],
        "partitions": manifest.get("partitions", 1),
        "load_average_after": os.getloadavg(),
    }


def _best_of(repeats: int, function) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def _side_by_side(run: Path, uri: str, repeats: int) -> dict[str, Any]:
    """The scoring stage against the boosters called directly on the same matrix."""
    from serving.scoring import score_accounts
    from training.registry import load_champion

    churn, upsell = load_champion("churn", uri=uri), load_champion("upsell", uri=uri)
    features = pd.read_parquet(run / "features.parquet")
    n = len(features)
    matrices = [churn.model.prepare(features), upsell.model.prepare(features)]

    def boosters_direct() -> None:
        for champion, matrix in zip((churn, upsell), matrices, strict=True):
            champion.model.booster_.predict(matrix, raw_score=True)

    with_reasons = _best_of(repeats, lambda: score_accounts(features, churn, upsell, top_k=3))
    without_reasons = _best_of(repeats, lambda: score_accounts(features, churn, upsell, top_k=0))
    direct = _best_of(repeats, boosters_direct)
    return {
        "rows": n,
        "score_accounts_top3_rows_per_s": round(n / with_reasons),
        "score_accounts_no_reasons_rows_per_s": round(n / without_reasons),
        "boosters_direct_rows_per_s": round(n / direct),
        "no_reasons_vs_direct": round(direct / without_reasons, 3),
        "top3_vs_direct": round(direct / with_reasons, 3),
    }


def _markdown(result: dict[str, Any]) -> str:
    job = result["job"]
    lines = [
        f"Nightly job, {result['accounts']:,} generated accounts "
        f"({job['row_counts']['active_accounts']:,} active; "
        f"{sum(result['generation']['rows'].values()):,} source rows; "
        f"loaded in {job['partitions']} partition(s)), "
        f"{result['machine']['cpus']} CPUs ({result['machine']['cpu_model']}), "
        f"{result['machine']['date']}",
        "",
        "| stage | seconds |",
        "|---|---:|",
    ]
    lines += [f"| {stage} | {seconds:.2f} |" for stage, seconds in job["stages_seconds"].items()]
    lines += [
        f"| **job (sum of stages)** | **{job['job_seconds']:.2f}** |",
        f"| **process wall time (imports to exit)** | **{job['wall_seconds']:.2f}** |",
        "",
        f"Peak memory of the job process: {job['peak_rss_mib']} MiB.",
        f"Load average before {result['machine']['load_average_before']:.1f}, "
        f"after (1/5/15 min) {', '.join(f'{x:.1f}' for x in job['load_average_after'])}.",
    ]
    light = result.get("job_without_allocation")
    if light:
        lines += [
            "",
            f"Without the account-manager allocation (`NightlyJobSettings(allocate=False)`): "
            f"job {light['job_seconds']:.2f} s (portfolio stage "
            f"{light['stages_seconds']['portfolio']:.2f} s), process wall time "
            f"{light['wall_seconds']:.2f} s, peak RSS {light['peak_rss_mib']} MiB.",
        ]
    if "scoring" in result:
        s = result["scoring"]
        lines += [
            "",
            f"Scoring side by side on the {s['rows']:,} scored accounts (best of "
            f"{result['repeats']}):",
            "",
            "| | rows/s |",
            "|---|---:|",
            f"| `score_accounts`, both models, top-3 reasons each | {s['score_accounts_top3_rows_per_s']:,} |",
            f"| `score_accounts`, both models, no reasons | {s['score_accounts_no_reasons_rows_per_s']:,} |",
            f"| both boosters directly on the prepared matrix | {s['boosters_direct_rows_per_s']:,} |",
            "",
            f"No reasons vs direct: {s['no_reasons_vs_direct']:.0%}; "
            f"with top-3 reasons vs direct: {s['top3_vs_direct']:.0%}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train-accounts", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3, help="best-of for the side by side")
    parser.add_argument("--skip-side-by-side", action="store_true")
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        help=f"generate in this many pieces (default: one per {SHARD_ACCOUNTS:,} accounts)",
    )
    parser.add_argument(
        "--partitions", type=int, default=None, help="partitions of the job (default: automatic)"
    )
    parser.add_argument(
        "--portfolio",
        type=Path,
        default=None,
        help="score this already generated portfolio (its sources.yaml) instead of generating",
    )
    parser.add_argument(
        "--reuse-models",
        action="store_true",
        help="use the champions an earlier run trained into --work (skip training)",
    )
    parser.add_argument(
        "--without-allocation-only",
        action="store_true",
        help="run the job once, with the account-manager allocation off",
    )
    parser.add_argument(
        "--also-without-allocation",
        action="store_true",
        help="run the job a second time with the account-manager allocation off",
    )
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: temp)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("mlflow", "alembic", "optuna", "lightgbm", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
        (work / "mlflow").mkdir(exist_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ.pop("MLFLOW_REGISTRY_URI", None)

        if args.reuse_models and (work / "mlflow" / "mlflow.db").exists():
            training = {"reused": str(work / "mlflow")}
        else:
            logger.info("training champions on %d accounts", args.train_accounts)
            training = _train_champions(args.train_accounts, args.months, args.seed, work, uri)
        if args.portfolio is not None:
            sources, generation = _existing(args.portfolio)
        else:
            logger.info("generating %d accounts", args.accounts)
            shards = args.shards or -(-args.accounts // SHARD_ACCOUNTS)
            sources, generation = _generate(
                args.accounts, args.months, args.seed, work / "portfolio", shards
            )
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        env.pop("MLFLOW_REGISTRY_URI", None)
        out = work / "runs" / "latest"
        logger.info("running the nightly job")
        job = _run_job(
            sources,
            out,
            env,
            work / "job.log",
            allocate=not args.without_allocation_only,
            partitions=args.partitions,
        )
        without_allocation = None
        if args.also_without_allocation:
            logger.info("running the nightly job without the allocation")
            without_allocation = _run_job(
                sources,
                work / "runs" / "light",
                env,
                work / "job-light.log",
                allocate=False,
                partitions=args.partitions,
            )
        result: dict[str, Any] = {
            "accounts": args.accounts,
            "months": args.months,
            "machine": describe_machine(),
            "training": training,
            "generation": generation,
            "job": job,
            "allocation": not args.without_allocation_only,
            "job_without_allocation": without_allocation,
            "repeats": args.repeats,
        }
        if not args.skip_side_by_side:
            logger.info("scoring side by side")
            result["scoring"] = _side_by_side(out, uri, args.repeats)

    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"batch-{args.accounts}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    Console().print(_markdown(result), markup=False, highlight=False, soft_wrap=True)
    return result


if __name__ == "__main__":
    main()
