"""Publishing a run folder atomically and writing its files deterministically.

`staged_run_folder(out_dir)` hands out a temporary sibling folder
(`.<name>.tmp-<pid>`); everything is written there, flushed to disk, and only
then renamed into place. When `out_dir` already holds an earlier output, the
old folder is first renamed aside (`.<name>.old-<pid>`), the new one renamed
in, and the old one deleted. A run that fails or is killed leaves the
previous output as it was and no partial folder under the visible name; the
next run of the same folder removes stale temporary folders (and, in the
unlikely case that a crash fell between the two renames, puts the old output
back first). A lock file (`.<name>.lock`) keeps two jobs from publishing the
same folder at once.

`work_folder(parent, purpose)` is a hidden scratch folder beside the runs
(`.work-<purpose>-<pid>-...`, e.g. the partitions of a large portfolio's
sources), removed when its block ends; one left by a killed process is
removed by the next (`clean_stale_work_folders`).

The writers are deterministic: the same frame or document gives the same bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class OutputLockedError(RuntimeError):
    """Another job is writing the same output folder."""


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _fsync_path(path)
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        _fsync_path(path)
    _fsync_path(folder)


def _temp_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.tmp-"


def _old_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.old-"


def clean_stale_folders(out_dir: Path) -> list[Path]:
    """Remove what interrupted runs of `out_dir` left beside it; returns the removed paths.

    A `.old-` folder whose `out_dir` is missing is the previous output caught
    between the two renames: it is renamed back into place, not deleted.
    """
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    removed: list[Path] = []
    for old in sorted(parent.glob(f"{_old_prefix(out_dir)}*")):
        if not out_dir.exists():
            old.rename(out_dir)
            continue
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    for temp in sorted(parent.glob(f"{_temp_prefix(out_dir)}*")):
        shutil.rmtree(temp, ignore_errors=True)
        removed.append(temp)
    return removed


@contextlib.contextmanager
def _exclusive_lock(out_dir: Path) -> Iterator[None]:
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OutputLockedError(
                f"another job is writing {out_dir} (lock {lock_path} is held)"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _swap_into_place(staged: Path, out_dir: Path) -> None:
    parent = out_dir.parent
    if out_dir.exists():
        aside = parent / f"{_old_prefix(out_dir)}{os.getpid()}"
        out_dir.rename(aside)
        staged.rename(out_dir)
        _fsync_path(parent)
        shutil.rmtree(aside)
    else:
        staged.rename(out_dir)
        _fsync_path(parent)


@contextlib.contextmanager
def staged_run_folder(out_dir: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; publish it as `out_dir` when the block succeeds.

    On an exception the temporary folder is removed and `out_dir` is untouched.
    """
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(out_dir):
        clean_stale_folders(out_dir)
        staged = out_dir.parent / f"{_temp_prefix(out_dir)}{os.getpid()}"
        staged.mkdir()
        try:
            yield staged
            _fsync_tree(staged)
            _swap_into_place(staged, out_dir)
        finally:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)


# Scratch folders of running jobs: `.work-<purpose>-<pid>-...` beside the runs (see `work_folder`).
_WORK_PREFIX = ".work-"


@contextlib.contextmanager
def work_folder(parent: Path, purpose: str) -> Iterator[Path]:
    """Yield an empty hidden scratch folder `<parent>/.work-<purpose>-<pid>-<random>`, removed on exit.

    It is removed also when the block fails; folders of the same `purpose` left
    by processes that no longer run (a killed job) are removed first.
    """
    parent = Path(parent).absolute()
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale_work_folders(parent, purpose)
    folder = Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{purpose}-{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def clean_stale_work_folders(parent: Path, purpose: str) -> list[Path]:
    """Remove the `work_folder`s of `purpose` in `parent` whose process no longer runs."""
    prefix = f"{_WORK_PREFIX}{purpose}-"
    removed = []
    for stale in sorted(Path(parent).glob(f"{prefix}*")):
        pid = stale.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not _process_runs(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def write_parquet(
    frame: pd.DataFrame, path: Path, column_types: dict[str, pa.DataType] | None = None
) -> None:
    """Write `frame` (its index dropped) as Parquet; the same frame always gives the same bytes.

    `column_types` fixes the Arrow type of columns whose type cannot be
    inferred from every frame (e.g. a list-of-struct column that is empty).
    """
    frame = frame.reset_index(drop=True)
    schema = None
    if column_types:
        frame = frame.astype({name: object for name in column_types if name in frame.columns})
        inferred = pa.Schema.from_pandas(frame, preserve_index=False)
        schema = pa.schema(
            [
                field.with_type(column_types[field.name]) if field.name in column_types else field
                for field in inferred
            ],
            metadata=inferred.metadata,
        )
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def json_ready(value: Any) -> Any:
    """`value` with numpy/pandas scalars, timestamps and non-finite floats made JSON-safe.

    NaN and infinities become None; timestamps become ISO dates (or date-times
    when they carry a time); tuples become lists.
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    if isinstance(value, pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return None
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def dumps_json(document: Any) -> str:
    """Deterministic, readable JSON text of `document` (keys in the order given)."""
    return json.dumps(json_ready(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(document: Any, path: Path) -> None:
    """Write `document` as deterministic JSON."""
    Path(path).write_text(dumps_json(document), encoding="utf-8")
