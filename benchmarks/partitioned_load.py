"""The load stage of the partitioned nightly job: split once, or scan per partition.

Loads every partition of a `sources.yaml` the way `portfolio score` does with
K partitions (K automatic unless given) and reports wall and CPU seconds
(process user + system, every thread) and the peak RSS, for two designs,
each in its own process (so that the peaks are apart):

- `split`: the account-keyed tables written once into K sets of partition
  files (`features.sources.split_sources`, in a scratch folder removed
  afterwards), then each partition loaded from its own files (the job's way);
- `scan`: each partition filtered while every source file is scanned
  (`AccountPartition` without a split: the job's way before the split).

Only the load is timed (no features). Run with:

    uv run python -m benchmarks.partitioned_load --sources PORTFOLIO/sources.yaml \\
        [--partitions K] [--designs split,scan] [--work DIR]

Results are recorded by hand in docs/benchmarks.md ("1,000,000 accounts,
loaded in partitions").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.machine import describe_machine
from features.sources import AccountPartition, SplitSources, load_sources
from serving.batch import NightlyJobSettings, number_of_partitions, split_partitions
from serving.publish import work_folder

DESIGNS = ("split", "scan")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_load(sources: Path, partitions: int, design: str, work: Path) -> dict[str, Any]:
    """Load every partition with `design`; seconds, rows and peak memory (this process)."""
    started_wall, started_cpu = time.perf_counter(), _cpu_seconds()
    split: SplitSources | None = None
    split_wall = split_cpu = 0.0
    rows = issues = 0
    with work_folder(work, "partitions") as folder:
        if design == "split":
            split = split_partitions(sources, partitions, folder)
            split_wall = time.perf_counter() - started_wall
            split_cpu = _cpu_seconds() - started_cpu
        for index in range(partitions):
            loaded = load_sources(sources, AccountPartition(index, partitions, split))
            rows += sum(load.rows_read for load in loaded.report.tables)
            issues += len(loaded.report.issues)
            del loaded
    return {
        "design": design,
        "partitions": partitions,
        "wall_seconds": round(time.perf_counter() - started_wall, 1),
        "cpu_seconds": round(_cpu_seconds() - started_cpu, 1),
        "split_wall_seconds": round(split_wall, 1),
        "split_cpu_seconds": round(split_cpu, 1),
        "rows_read": rows,
        "issues": issues,
        "peak_rss_mib": round(_peak_rss_mib()),
        "load_average_after": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, required=True)
    parser.add_argument("--partitions", type=int, default=None, help="default: the job's K")
    parser.add_argument("--designs", default=",".join(DESIGNS), help="split, scan or both")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--one", choices=DESIGNS, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    partitions = args.partitions or number_of_partitions(args.sources, NightlyJobSettings())

    if args.one:
        result = measure_load(args.sources, partitions, args.one, args.work)
        sys.stdout.write(json.dumps(result) + "\n")
        return

    console = Console()
    console.print(describe_machine())
    results = []
    for design in args.designs.split(","):
        command = [
            sys.executable,
            "-m",
            "benchmarks.partitioned_load",
            "--sources",
            str(args.sources),
            "--partitions",
            str(partitions),
            "--work",
            str(args.work),
            "--one",
            design,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    table = Table(title=f"load stage, {partitions} partitions of {args.sources}")
    table.add_column("measure")
    for result in results:
        table.add_column(result["design"], justify="right")
    for measure in results[0]:
        if measure != "design":
            table.add_row(measure, *(f"{result[measure]:,}" for result in results))
    console.print(table)
    console.print(json.dumps(results))


if __name__ == "__main__":
    main()
