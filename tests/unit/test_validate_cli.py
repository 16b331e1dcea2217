"""`portfolio validate`: exit codes, readable report, JSON, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.cli import app
from serving.cli import commands as _commands  # noqa: F401  (registers the subcommands)

runner = CliRunner()


def write_sources(folder: Path, subscriptions_csv: str) -> Path:
    (folder / "subs.csv").write_text(subscriptions_csv)
    sources = folder / "sources.yaml"
    sources.write_text("name: cli-test\ntables:\n  subscriptions: {path: subs.csv}\n")
    return sources


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_usable_sources_exit_0(tmp_path: Path) -> None:
    sources = write_sources(tmp_path, "account_id,start_date,arr\nA1,2023-01-01,100\n")
    result = invoke("validate", "--sources", str(sources))
    assert result.exit_code == 0, result.output
    assert "usable" in result.output and "subscriptions" in result.output


def test_errors_exit_1_naming_table_column_rule_and_example(tmp_path: Path) -> None:
    sources = write_sources(
        tmp_path,
        "account_id,start_date,end_date,arr\nA1,2023-01-01,,100\nA2,2023-05-01,2023-01-01,-50\n",
    )
    result = invoke("validate", "--sources", str(sources))
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "subscriptions.arr" in output and "negative_arr" in output
    assert "subscriptions.end_date" in output and "end_before_start" in output
    assert "account_id='A2'" in output
    assert "not usable" in output


def test_json_report(tmp_path: Path) -> None:
    sources = write_sources(
        tmp_path, "account_id,start_date,arr\nA1,someday,100\nA2,2023-01-01,5\n"
    )
    result = invoke("validate", "--sources", str(sources), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    issue = report["issues"][0]
    assert (issue["table"], issue["column"], issue["rule"], issue["count"]) == (
        "subscriptions",
        "start_date",
        "unparseable_value",
        1,
    )
    assert issue["examples"][0]["start_date"] == "someday"
    assert report["tables"][0]["rows_excluded"] == 1


@pytest.mark.parametrize(
    "yaml_text",
    [
        "tables: [broken\n",
        "tables:\n  orders: {sql: 'SELECT nope FROM nowhere'}\n",
        "tables:\n  orders: {path: missing.csv}\n",
        "tables:\n  clients: {path: missing.csv}\n",
    ],
)
def test_bad_sources_exit_1_without_traceback(tmp_path: Path, yaml_text: str) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml_text)
    result = invoke("validate", "--sources", str(sources))
    assert result.exit_code == 1
    assert "ERROR" in result.output


def test_missing_sources_file_and_directory(tmp_path: Path) -> None:
    for target in (tmp_path / "nope.yaml", tmp_path):
        result = invoke("validate", "--sources", str(target))
        assert result.exit_code == 1
        assert "file_not_found" in result.output
