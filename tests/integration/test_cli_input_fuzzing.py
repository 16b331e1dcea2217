"""`portfolio validate` and `portfolio score` on generated user input (tests/fuzzed_sources.py).

Property: the command ends either with a clear error (non-zero exit code, the
table and column named, no Python traceback, never the catch-all "failed:
<ExceptionType>" message) or with a success in which every input row is
accounted for: validate's JSON report counts the rows read, loaded and
excluded per table as the generated files hold them; score's manifest,
scores.parquet and rejected.parquet hold every account active at the as-of
date, scored or rejected with a reason.

`score` runs cost seconds each, so it gets few examples; `validate` more. A
fixed derandomised seed keeps CI reproducible.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from fuzzed_sources import SCORING_AS_OF, ScoringPlan, SourcesPlan, scoring_plans, source_plans
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from serving.cli import app
from serving.cli import commands as _commands  # noqa: F401  (registers the subcommands)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOADING_RULES = {"missing_value", "unparseable_value"}
CATCH_ALL_MESSAGES = ("could not validate", "the nightly job failed:")

runner = CliRunner()


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output, result.output
    for message in CATCH_ALL_MESSAGES:
        assert message not in result.output, result.output
    return result


def check_report(plan: SourcesPlan, report: dict) -> None:
    """validate --json counts every generated row (or names the planted fatal problems)."""
    fatal = plan.fatal()
    # DuckDB sniffs a CSV's delimiter: a one-column file whose values hold '|', ';' or a tab
    # can come out as several headerless columns. The loader refuses it naming the file and
    # what to check (delimiter, header, read_options); that is a clear error, not a loss.
    sniffed = {
        i["table"]
        for i in report["issues"]
        if i["rule"] == "read_error" and "was read without a header row" in i["message"]
    }
    if sniffed and all(plan.table(name).file_format == "csv" for name in sniffed):
        assert not report["ok"]
        return
    if fatal:
        assert not report["ok"]
        assert {(i["table"], i["column"], i["rule"]) for i in report["issues"]} == fatal
        return
    loads = {load["table"]: load for load in report["tables"]}
    for table in plan.tables:
        load = loads[table.table]
        assert load["rows_read"] == table.rows_read, (table.table, load)
        assert load["rows_loaded"] == len(table.loaded_rows()), (table.table, load)
        assert load["rows_excluded"] == load["rows_read"] - load["rows_loaded"]
        counts = {
            (i["column"], i["rule"], i["severity"]): i["count"]
            for i in report["issues"]
            if i["table"] == table.table and i["rule"] in LOADING_RULES
        }
        assert counts == table.issue_counts(), (table.table, counts)
    assert report["error_count"] == sum(i["severity"] == "error" for i in report["issues"])


@fuzz_settings(100)
@given(plan=source_plans(), as_json=st.booleans())
def test_validate_reports_every_generated_row_or_a_clear_error(
    plan: SourcesPlan, as_json: bool
) -> None:
    note(plan.describe())
    with tempfile.TemporaryDirectory() as folder:
        sources = plan.write(Path(folder))
        if not as_json:  # the rich report renders whatever the data holds
            result = invoke("validate", "--sources", str(sources))
            assert result.exit_code in (0, 1)
            assert ("usable: 0 errors" in result.output) == (result.exit_code == 0)
            output = " ".join(result.output.split())
            for table, column, _ in plan.fatal():
                assert (f"{table}.{column}" if column else table) in output
            return
        result = invoke("validate", "--sources", str(sources), "--json")
        report = json.loads(result.output)
        assert result.exit_code == (0 if report["ok"] else 1)
        check_report(plan, report)


@pytest.fixture(scope="module")
def champions(champion_store: str) -> str:
    """The session's trained churn and upsell champions (tests/conftest.py)."""
    return champion_store


def check_run(plan: ScoringPlan, out: Path) -> None:
    """Every account active at the as-of date is in scores.parquet or rejected.parquet."""
    manifest = json.loads((out / "manifest.json").read_text())
    scores = pd.read_parquet(out / "scores.parquet")
    rejected = pd.read_parquet(out / "rejected.parquet")
    counts = manifest["row_counts"]
    assert counts["scored"] == len(scores) and counts["rejected"] == len(rejected)
    assert counts["scored"] + counts["rejected"] == counts["active_accounts"]
    assert scores["account_id"].is_unique
    assert set(scores["account_id"]) | set(rejected["account_id"]) == plan.active_accounts()
    assert rejected["reason"].notna().all() and rejected["detail"].notna().all()
    assert scores["p_churn"].between(0, 1).all() and scores["arr"].gt(0).all()
    tables = {load["table"]: load for load in manifest["data_quality"]["tables"]}
    assert tables["subscriptions"]["rows_read"] == len(plan.rows)
    assert tables["subscriptions"]["rows_excluded"] == 0
    if plan.usage is not None:
        assert tables["usage"]["rows_read"] == plan.usage.rows_read
        assert tables["usage"]["rows_loaded"] == len(plan.usage.loaded_rows())


@fuzz_settings(15)
@given(plan=scoring_plans())
def test_score_accounts_for_every_active_account_or_refuses_clearly(
    plan: ScoringPlan, champions: str
) -> None:
    note(plan.describe())
    with tempfile.TemporaryDirectory() as folder:
        sources = plan.write(Path(folder) / "input")
        out = Path(folder) / "run"
        result = invoke(
            "score",
            "--sources",
            str(sources),
            "--as-of",
            str(SCORING_AS_OF.date()),
            "--out",
            str(out),
        )
        event(f"score exit code {result.exit_code}")
        output = " ".join(result.output.split())
        if plan.usable and (
            plan.usage is None or plan.usage.rows_read == len(plan.usage.loaded_rows())
        ):
            assert result.exit_code == 0, result.output
            check_run(plan, out)
        elif not plan.usable:
            assert result.exit_code == 2, result.output
            assert "subscriptions." in output and "not usable" in output
            assert not out.exists()
        else:  # usage rows with a missing required value: an error naming usage
            assert result.exit_code == 2, result.output
            assert "usage." in output


def test_score_with_arr_near_the_float_maximum_publishes_a_run(
    champions: str, tmp_path: Path
) -> None:
    """Found by fuzzing: a valid ARR of 1.8e308 failed the report (OverflowError in the
    priority matrix's ticks) with the catch-all 'the nightly job failed' message."""
    (tmp_path / "subs.csv").write_text(
        "account_id,start_date,end_date,arr\n"
        "A1,2023-06-30,,1200\nB4,2022-03-14,,1.7976931348623157e308\nB4,2022-05-01,,1e308\n"
        "C7,2022-01-01,,1e308\n"
    )
    sources = tmp_path / "sources.yaml"
    sources.write_text("tables:\n  subscriptions: {path: subs.csv}\n")
    out = tmp_path / "run"
    result = invoke("score", "--sources", str(sources), "--as-of", "2023-06-30", "--out", str(out))
    assert result.exit_code == 0, result.output
    rejected = pd.read_parquet(out / "rejected.parquet")
    scores = pd.read_parquet(out / "scores.parquet")
    assert rejected.set_index("account_id")["reason"].to_dict() == {"B4": "invalid_arr"}
    assert sorted(scores["account_id"]) == ["A1", "C7"]
