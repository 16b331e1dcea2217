"""Atomic publication of run folders and deterministic writers: serving.publish."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.publish import (
    OutputLockedError,
    clean_stale_folders,
    dumps_json,
    staged_run_folder,
    work_folder,
    write_json,
    write_parquet,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_finished_block_publishes_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "2024-06-30"
    with staged_run_folder(out) as staged:
        assert staged.parent == out.parent and staged.name.startswith(".2024-06-30.tmp-")
        assert not out.exists()
        (staged / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new"
    assert [n for n in _names(out.parent) if not n.endswith(".lock")] == ["2024-06-30"]


def test_a_second_run_replaces_the_first(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_run_folder(out) as staged:
        (staged / "a.txt").write_text("first")
        (staged / "only-first.txt").write_text("x")
    with staged_run_folder(out) as staged:
        (staged / "a.txt").write_text("second")
    assert _names(out) == ["a.txt"]
    assert (out / "a.txt").read_text() == "second"
    assert [n for n in _names(tmp_path) if not n.endswith(".lock")] == ["run"]


def test_a_failure_leaves_the_previous_output_and_no_partial_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_run_folder(out) as staged:
        (staged / "a.txt").write_text("first")
    with pytest.raises(RuntimeError, match="boom"), staged_run_folder(out) as staged:
        (staged / "a.txt").write_text("half")
        raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "first"
    assert [n for n in _names(tmp_path) if not n.endswith(".lock")] == ["run"]


def test_stale_temp_folders_are_cleaned_and_a_stranded_old_output_is_restored(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    stale = tmp_path / ".run.tmp-99999"
    stale.mkdir()
    (stale / "partial.parquet").write_text("partial")
    old = tmp_path / ".run.old-99998"
    old.mkdir()
    (old / "a.txt").write_text("previous")

    clean_stale_folders(out)
    assert (out / "a.txt").read_text() == "previous"
    assert _names(tmp_path) == ["run"]


def test_a_second_writer_of_the_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with (
        staged_run_folder(out),
        pytest.raises(OutputLockedError, match="another job"),
        staged_run_folder(out),
    ):
        pass


def test_parquet_is_byte_identical_for_the_same_frame(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "account_id": pd.array(["b", "a"], dtype="string"),
            "as_of": pd.to_datetime(["2024-06-30", "2024-06-30"]),
            "p": [0.25, np.nan],
        },
        index=[7, 3],
    )
    write_parquet(frame, tmp_path / "one.parquet")
    write_parquet(frame.copy(), tmp_path / "two.parquet")
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
    back = pd.read_parquet(tmp_path / "one.parquet")
    assert list(back["account_id"]) == ["b", "a"] and list(back.index) == [0, 1]


def test_json_is_safe_and_deterministic(tmp_path: Path) -> None:
    document = {
        "as_of": pd.Timestamp("2024-06-30"),
        "value": np.float64(1.5),
        "missing": math.nan,
        "count": np.int64(3),
        "flags": (np.bool_(True), None),
        "when": pd.Timestamp("2024-06-30 12:30"),
    }
    text = dumps_json(document)
    assert json.loads(text) == {
        "as_of": "2024-06-30",
        "value": 1.5,
        "missing": None,
        "count": 3,
        "flags": [True, None],
        "when": "2024-06-30T12:30:00",
    }
    write_json(document, tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text() == text


def test_column_types_fix_the_type_of_an_empty_list_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    reason = pa.list_(pa.struct([("feature", pa.string()), ("contribution", pa.float64())]))
    empty = pd.DataFrame({"account_id": pd.array([], dtype="string"), "reasons": []})
    write_parquet(empty, tmp_path / "empty.parquet", {"reasons": reason})
    assert pq.read_schema(tmp_path / "empty.parquet").field("reasons").type == reason

    full = pd.DataFrame(
        {"account_id": ["A1"], "reasons": [[{"feature": "usage", "contribution": 0.5}]]}
    )
    write_parquet(full, tmp_path / "full.parquet", {"reasons": reason})
    back = pd.read_parquet(tmp_path / "full.parquet")
    assert list(back["reasons"].iloc[0]) == [{"feature": "usage", "contribution": 0.5}]


def test_a_work_folder_is_removed_after_its_block_and_when_its_process_is_gone(
    tmp_path: Path,
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stale = tmp_path / f".work-partitions-{gone.stdout.strip()}-abc"
    running = tmp_path / f".work-partitions-{os.getppid()}-def"  # a live process
    other = tmp_path / f".work-other-{gone.stdout.strip()}-ghi"
    for folder in (stale, running, other):
        (folder / "t").mkdir(parents=True)
    with work_folder(tmp_path, "partitions") as folder:
        assert folder.parent == tmp_path and folder.name.startswith(
            f".work-partitions-{os.getpid()}-"
        )
        (folder / "usage").mkdir()
    assert not folder.exists() and not stale.exists()
    assert running.exists() and other.exists()
    with pytest.raises(RuntimeError), work_folder(tmp_path, "partitions") as failed:
        raise RuntimeError("the load failed")
    assert not failed.exists()
