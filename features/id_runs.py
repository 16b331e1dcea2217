"""Id columns whose ids come in runs: one look-up per run instead of one per row.

Event tables are usually exported by account, so an account's rows come
together. Looking an id up in a hash table hashes its text; comparing it
with its neighbour does not. For a column whose ids come in runs, the
positions where a run starts are found by comparing neighbours (~2 ns a
row), the first id of each run is looked up, and the answer is repeated
over the run: about half the cost of a look-up per row for the feature
build's id codes, and less for validation's membership tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# How many first ids tell whether a column's ids come in runs, and the shortest mean run for
# which its ids are looked up once per run.
RUN_SAMPLE_ROWS = 65_536
RUN_MIN_LENGTH = 4


def run_starts(ids: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Where each run of equal ids starts, or None when runs are too short to pay.

    Runs pay when they are at least `RUN_MIN_LENGTH` ids long on average;
    the first `RUN_SAMPLE_ROWS` ids are looked at first, so that ids in no
    particular order cost one short comparison. A missing id starts a run
    of its own.
    """
    rows = len(ids)
    if rows < RUN_SAMPLE_ROWS:
        return None
    if len(_changes(ids.slice(0, RUN_SAMPLE_ROWS))) * RUN_MIN_LENGTH > RUN_SAMPLE_ROWS:
        return None
    changes = _changes(ids)
    if len(changes) * RUN_MIN_LENGTH > rows:
        return None
    following = changes.to_numpy().astype(np.int64) + 1
    return np.concatenate((np.zeros(1, dtype=np.int64), following))


def run_lengths(starts: np.ndarray, rows: int) -> np.ndarray:
    """How many rows each run holds, from `run_starts` of a column of `rows` rows."""
    return np.diff(starts, append=rows)


def take_rows(ids: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """`ids[rows]` for ascending `rows`, chunk by chunk.

    Arrow's take over a chunked column first joins its chunks into one array
    (10 M ids loaded from Parquet: 0.5 s in a new process, for 92,000 rows).
    """
    if isinstance(ids, pa.Array):
        return ids.take(rows)
    ends = np.cumsum([len(chunk) for chunk in ids.chunks])
    bounds = np.searchsorted(rows, ends)
    parts, start, offset = [], 0, 0
    for chunk, end, bound in zip(ids.chunks, ends, bounds, strict=True):
        parts.append(chunk.take(rows[start:bound] - offset))
        start, offset = bound, end
    return pa.chunked_array(parts, ids.type)


def by_runs(
    ids: pa.Array | pa.ChunkedArray,
    look_up: Callable[[pa.Array | pa.ChunkedArray], np.ndarray],
) -> np.ndarray:
    """`look_up(ids)` (a NumPy array, one value per id), once per run when the ids come in runs."""
    starts = run_starts(ids)
    if starts is None:
        return look_up(ids)
    return np.repeat(look_up(take_rows(ids, starts)), run_lengths(starts, len(ids)))


def repeat_runs(codes: pa.Array | pa.ChunkedArray, starts: np.ndarray, rows: int) -> pa.Array:
    """The code (a non-negative integer, or null) of each run repeated over the rows of the run."""
    lengths = run_lengths(starts, rows)
    if codes.null_count == 0:
        return pa.array(np.repeat(codes.to_numpy(), lengths))
    repeated = np.repeat(pc.fill_null(codes, -1).to_numpy(), lengths)
    return pa.array(repeated, mask=repeated < 0)


def _changes(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The positions i where ids[i + 1] differs from ids[i] (or either is missing)."""
    rows = len(ids)
    different = pc.not_equal(ids.slice(1), ids.slice(0, rows - 1))
    return pc.indices_nonzero(pc.fill_null(different, True))
