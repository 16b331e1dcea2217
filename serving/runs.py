"""Where nightly runs live and how to find them.

A run folder is what `portfolio score --sources ... --out DIR` writes
(`scores.parquet`, `rejected.parquet`, `features.parquet`, `portfolio.json`,
`report.html`, `manifest.json`). Runs of one portfolio share a parent folder,
by default `<repo>/runs/`, one subfolder per run named by its as-of date
(`runs/2024-06-30/`). A folder counts as a completed run only when its
`manifest.json` exists (the job renames a finished folder into place, so a
half-written run is never visible). Names starting with a dot are the job's
temporary folders and never count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class RunInfo:
    """A completed run folder, the as-of date it scored and the horizon of its scores."""

    path: Path
    as_of: pd.Timestamp
    horizon_days: int | None = None


def default_runs_root() -> Path:
    """The default parent folder of nightly runs: `<repo>/runs`."""
    return Path(__file__).resolve().parents[1] / "runs"


def read_run_info(path: Path) -> RunInfo | None:
    """The run in `path`, or None when it is not a completed run folder."""
    manifest_path = Path(path) / MANIFEST_FILE
    if Path(path).name.startswith(".") or not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        as_of = pd.Timestamp(manifest["as_of"])
        horizon = manifest.get("horizon_days")
        horizon_days = int(horizon) if horizon is not None else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if pd.isna(as_of):
        return None
    return RunInfo(path=Path(path), as_of=as_of, horizon_days=horizon_days)


def list_runs(root: Path) -> list[RunInfo]:
    """Completed runs directly under `root`, oldest as-of first (ties by folder name)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [info for child in root.iterdir() if child.is_dir() and (info := read_run_info(child))]
    return sorted(runs, key=lambda run: (run.as_of, run.path.name))


def latest_run_dir(root: Path | None = None) -> Path | None:
    """The completed run with the latest as-of date under `root` (default: `default_runs_root()`)."""
    runs = list_runs(default_runs_root() if root is None else Path(root))
    return runs[-1].path if runs else None


def previous_run(root: Path, as_of: pd.Timestamp, exclude: Path | None = None) -> RunInfo | None:
    """The latest completed run under `root` scored strictly before `as_of`, other than `exclude`.

    The nightly job compares a run with this one (movers). Excluding the folder
    being written keeps a rerun of the same folder comparing with the same run.
    """
    excluded = Path(exclude).resolve() if exclude is not None else None
    earlier = [
        run
        for run in list_runs(root)
        if run.as_of < as_of and (excluded is None or run.path.resolve() != excluded)
    ]
    return earlier[-1] if earlier else None
