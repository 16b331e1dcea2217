"""The nightly job run part by part of the accounts publishes what one pass publishes.

Uses the session's 300-account portfolio and champions (tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from serving.batch import NightlyJobSettings, run_nightly_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA_FILES = ("scores.parquet", "rejected.parquet", "features.parquet", "portfolio.json")


@pytest.fixture(autouse=True)
def _champions(champion_store: str) -> str:
    return champion_store


def _run(sources: Path, out: Path, partitions: int) -> dict:
    run_nightly_job(sources, out_dir=out, settings=NightlyJobSettings(partitions=partitions))
    return json.loads((out / "manifest.json").read_text())


def _manifest_content(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in ("timings", "partitions", "sources")}


@pytest.fixture(scope="module")
def one_pass(nightly_sources: Path, champion_store: str, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one-pass") / "run"
    manifest = _run(nightly_sources, out, partitions=1)
    assert manifest["partitions"] == 1
    return out


def test_three_partitions_publish_the_same_files(
    one_pass: Path, nightly_sources: Path, tmp_path: Path
) -> None:
    out = tmp_path / "three" / "run"
    manifest = _run(nightly_sources, out, partitions=3)
    assert manifest["partitions"] == 3
    for name in DATA_FILES:
        assert (out / name).read_bytes() == (one_pass / name).read_bytes(), name
    first = json.loads((one_pass / "manifest.json").read_text())
    assert _manifest_content(manifest) == _manifest_content(first)
    assert manifest["timings"]["stages_seconds"].keys() >= {"load", "features", "score"}


def test_sources_split_over_files_read_in_partitions_give_the_same_files(
    one_pass: Path, nightly_sources: Path, tmp_path: Path
) -> None:
    """Every table in three Parquet files read through a glob, in five partitions."""
    folder = tmp_path / "split"
    document = yaml.safe_load(nightly_sources.read_text())
    for table, entry in document["tables"].items():
        frame = pq.read_table(nightly_sources.parent / entry["path"])
        (folder / table).mkdir(parents=True)
        step = -(-frame.num_rows // 3)
        for part in range(3):
            pq.write_table(frame.slice(part * step, step), folder / table / f"part-{part}.parquet")
        entry["path"] = f"{table}/part-*.parquet"
    sources = folder / "sources.yaml"
    sources.write_text(yaml.safe_dump(document, sort_keys=False))

    out = tmp_path / "five" / "run"
    manifest = _run(sources, out, partitions=5)
    for name in DATA_FILES:
        assert (out / name).read_bytes() == (one_pass / name).read_bytes(), name
    first = json.loads((one_pass / "manifest.json").read_text())
    assert manifest["data_quality"] == first["data_quality"] | {
        "tables": [
            {**load, "source": load["source"].replace(".parquet", "/part-*.parquet")}
            for load in first["data_quality"]["tables"]
        ]
    }


def test_many_small_partitions_still_score_every_account(
    one_pass: Path, nightly_sources: Path, tmp_path: Path
) -> None:
    """About seven accounts a partition: some partitions have no active account."""
    out = tmp_path / "many" / "run"
    _run(nightly_sources, out, partitions=40)
    for name in ("scores.parquet", "rejected.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(one_pass / name))


def test_the_cli_takes_the_number_of_partitions(
    one_pass: Path, nightly_sources: Path, tmp_path: Path
) -> None:
    from serving.cli import commands  # noqa: F401  (registers the commands)
    from serving.cli.app import app

    out = tmp_path / "cli" / "run"
    runner = CliRunner()
    ok = runner.invoke(
        app, ["score", "--sources", str(nightly_sources), "--out", str(out), "--partitions", "2"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "manifest.json").read_text())["partitions"] == 2
    assert (out / "scores.parquet").read_bytes() == (one_pass / "scores.parquet").read_bytes()
    bad = runner.invoke(
        app, ["score", "--sources", str(nightly_sources), "--out", str(out), "--partitions", "0"]
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output
