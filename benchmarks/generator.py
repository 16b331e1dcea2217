"""How fast the synthetic portfolio generator runs, and how much memory it needs.

Generates a portfolio (100,000 accounts x 36 months by default) and writes its
Parquet tables, ground truth and sources.yaml into a temporary folder (or
`--out`), timing generation and writing and reporting the peak resident
memory of the process. The target: under 2 minutes and under 4 GB. Run with:

    uv run python -m benchmarks.generator [--accounts N] [--months M] [--kind saas|orders]

Results are recorded by hand in docs/benchmarks.md ("Synthetic generator").
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio

TARGET_SECONDS = 120.0
TARGET_PEAK_GB = 4.0


@dataclass(frozen=True)
class GeneratorBenchmark:
    accounts: int
    months: int
    kind: str
    row_counts: dict[str, int]
    generate_seconds: float
    write_seconds: float
    peak_rss_gb: float

    @property
    def total_seconds(self) -> float:
        return self.generate_seconds + self.write_seconds

    @property
    def meets_target(self) -> bool:
        return self.total_seconds < TARGET_SECONDS and self.peak_rss_gb < TARGET_PEAK_GB


def run(settings: GeneratorSettings, out_dir: Path) -> GeneratorBenchmark:
    """Generate and write one portfolio, timing both steps."""
    started = time.perf_counter()
    portfolio = generate_portfolio(settings)
    generated = time.perf_counter()
    write_portfolio(portfolio, out_dir)
    finished = time.perf_counter()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return GeneratorBenchmark(
        accounts=settings.n_accounts,
        months=settings.months,
        kind=settings.kind,
        row_counts=portfolio.row_counts(),
        generate_seconds=generated - started,
        write_seconds=finished - generated,
        peak_rss_gb=peak_kb / 1024**2,
    )


def render(result: GeneratorBenchmark) -> Table:
    table = Table(
        title=f"synthetic generator: {result.accounts:,} accounts x {result.months} months ({result.kind})"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, rows in result.row_counts.items():
        table.add_row(f"rows {name}", f"{rows:,}")
    table.add_row("generate (s)", f"{result.generate_seconds:.1f}")
    table.add_row("write Parquet (s)", f"{result.write_seconds:.1f}")
    table.add_row("total (s)", f"{result.total_seconds:.1f}")
    table.add_row("peak RSS (GB)", f"{result.peak_rss_gb:.2f}")
    table.add_row(
        f"target (< {TARGET_SECONDS:.0f} s, < {TARGET_PEAK_GB:.0f} GB)",
        "met" if result.meets_target else "MISSED",
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=["saas", "orders"], default="saas")
    parser.add_argument("--out", type=Path, default=None, help="keep the output here")
    args = parser.parse_args()
    settings = GeneratorSettings(
        n_accounts=args.accounts, months=args.months, seed=args.seed, kind=args.kind
    )
    if args.out is not None:
        result = run(settings, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="generator-benchmark-") as folder:
            result = run(settings, Path(folder))
    Console().print(render(result))


if __name__ == "__main__":
    main()
