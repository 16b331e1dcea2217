"""Finding completed run folders: serving.runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from serving.runs import default_runs_root, latest_run_dir, list_runs, previous_run, read_run_info


def _run(root: Path, name: str, as_of: str | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if as_of is not None:
        (folder / "manifest.json").write_text(json.dumps({"as_of": as_of}))
    return folder


def test_default_root_is_runs_beside_the_packages() -> None:
    root = default_runs_root()
    assert root.name == "runs"
    assert (root.parent / "serving" / "runs.py").is_file()


def test_latest_run_is_the_latest_as_of_among_completed_runs(tmp_path: Path) -> None:
    _run(tmp_path, "2024-04-30", "2024-04-30")
    _run(tmp_path, "2024-06-30", "2024-06-30")
    _run(tmp_path, "2024-07-31", None)  # no manifest: unfinished or foreign
    _run(tmp_path, ".2024-08-31.tmp-1", "2024-08-31")  # the job's temp folder
    _run(tmp_path, "custom-name", "2024-05-31")
    (tmp_path / "notes.txt").write_text("not a run")

    assert [r.path.name for r in list_runs(tmp_path)] == [
        "2024-04-30",
        "custom-name",
        "2024-06-30",
    ]
    assert latest_run_dir(tmp_path) == tmp_path / "2024-06-30"


def test_no_runs(tmp_path: Path) -> None:
    assert latest_run_dir(tmp_path) is None
    assert latest_run_dir(tmp_path / "missing") is None


def test_broken_manifest_is_not_a_run(tmp_path: Path) -> None:
    folder = _run(tmp_path, "2024-06-30", None)
    (folder / "manifest.json").write_text("{not json")
    assert read_run_info(folder) is None
    (folder / "manifest.json").write_text(json.dumps({"as_of": "not a date"}))
    assert read_run_info(folder) is None


def test_previous_run_is_strictly_earlier_and_excludes_the_folder_being_written(
    tmp_path: Path,
) -> None:
    _run(tmp_path, "2024-04-30", "2024-04-30")
    may = _run(tmp_path, "2024-05-31", "2024-05-31")
    june = _run(tmp_path, "2024-06-30", "2024-06-30")

    previous = previous_run(tmp_path, pd.Timestamp("2024-06-30"), exclude=june)
    assert previous is not None and previous.path == may
    previous = previous_run(tmp_path, pd.Timestamp("2024-05-31"), exclude=june)
    assert previous is not None and previous.path.name == "2024-04-30"
    assert previous_run(tmp_path, pd.Timestamp("2024-04-30")) is None
