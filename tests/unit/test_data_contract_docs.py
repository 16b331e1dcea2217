"""docs/data-contract.md documents every contract table, column and validation rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from features.contract import CONTRACT
from features.issues import Rule

DOC = (Path(__file__).resolve().parents[2] / "docs" / "data-contract.md").read_text()


def table_section(table: str) -> str:
    match = re.search(rf"^### {table}\n(.*?)(?=^### |^## )", DOC, re.S | re.M)
    assert match, f"docs/data-contract.md has no section for {table}"
    return match.group(1)


@pytest.mark.parametrize("table", list(CONTRACT))
def test_every_column_is_documented_with_its_type_and_requiredness(table: str) -> None:
    section = table_section(table)
    for column in CONTRACT[table].columns:
        row = re.search(rf"^\| `{column.name}` \| (\w+) \| ([^|]+) \|", section, re.M)
        assert row, f"{table}.{column.name} is not documented"
        assert row.group(1) == column.type
        assert ("yes" in row.group(2)) == column.required


def test_no_undocumented_extra_columns() -> None:
    for table, spec in CONTRACT.items():
        documented = re.findall(r"^\| `(\w+)` \|", table_section(table), re.M)
        assert documented == spec.column_names


@pytest.mark.parametrize("rule", [rule.value for rule in Rule])
def test_every_rule_is_documented(rule: str) -> None:
    assert f"| `{rule}` |" in DOC
