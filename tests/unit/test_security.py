"""What docs/security.md states holds: version floors, no pickle in the code, no credentials
in the service's not-ready answer."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from serving.online import not_ready_response, redact_credentials

REPO = Path(__file__).resolve().parents[2]
SECURITY_DOC = REPO / "docs" / "security.md"
PINNED = ("bentoml", "mlflow")
PICKLE_MODULES = frozenset({"pickle", "cloudpickle", "dill", "joblib", "_pickle"})

# | `bentoml` | `>=1.4.39` | `1.4.40` |
VERSION_ROW = re.compile(
    r"^\|\s*`(?P<name>[\w-]+)`\s*\|\s*`(?P<floor>[^`]+)`\s*\|\s*`(?P<locked>[^`]+)`\s*\|"
)


def _documented_versions() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in SECURITY_DOC.read_text(encoding="utf-8").splitlines():
        match = VERSION_ROW.match(line)
        if match:
            rows[match["name"]] = (match["floor"], match["locked"])
    return rows


def _pyproject_floors() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {r.name: str(r.specifier) for r in requirements}


def _locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    return {package["name"]: package["version"] for package in lock["package"]}


@pytest.mark.parametrize("name", PINNED)
def test_security_doc_states_the_floor_and_the_locked_version(name):
    documented = _documented_versions()
    assert name in documented, f"docs/security.md has no version row for {name}"
    floor, locked = documented[name]
    assert floor == _pyproject_floors()[name], (
        f"docs/security.md says {name} {floor}; pyproject.toml says {_pyproject_floors()[name]}"
    )
    assert locked == _locked_versions()[name], (
        f"docs/security.md says {name} {locked} is locked; uv.lock has {_locked_versions()[name]}"
    )
    assert Requirement(f"{name}{floor}").specifier.contains(Version(locked))


def test_the_floors_are_above_the_fixes_the_doc_names():
    """The fixed versions docs/security.md cites for the latest advisories are within the floors."""
    floors = _pyproject_floors()
    assert Requirement(f"bentoml{floors['bentoml']}").specifier.contains("1.4.39")
    assert not Requirement(f"bentoml{floors['bentoml']}").specifier.contains("1.4.38")
    assert not Requirement(f"mlflow{floors['mlflow']}").specifier.contains("3.16.0")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_package_module_imports_a_pickle_library():
    sources = [
        p for package in ("features", "training", "serving") for p in (REPO / package).rglob("*.py")
    ]
    assert len(sources) > 20
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported_modules(path) & PICKLE_MODULES)
        for path in sources
        if _imported_modules(path) & PICKLE_MODULES
    }
    assert offenders == {}


def test_imported_modules_sees_a_pickle_import(tmp_path):
    """The check above can fail."""
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom cloudpickle import loads\nimport pickle as p\n")
    assert _imported_modules(module) & PICKLE_MODULES == {"cloudpickle", "pickle"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "no @champion in https://alice:s3cret@mlflow.example/api",
            "no @champion in https://***@mlflow.example/api",
        ),
        ("token https://ghp_abc123@host:5000/x", "token https://***@host:5000/x"),
        ("sqlite:////srv/models/mlflow.db", "sqlite:////srv/models/mlflow.db"),
        ("http://127.0.0.1:5000/api/2.0 refused", "http://127.0.0.1:5000/api/2.0 refused"),
        ("a@b in plain text, user@example.com", "a@b in plain text, user@example.com"),
        (
            "two: http://a:b@h1/ and s3://k:s@bucket/p",
            "two: http://***@h1/ and s3://***@bucket/p",
        ),
    ],
)
def test_redact_credentials(text, expected):
    assert redact_credentials(text) == expected


def test_the_not_ready_answer_carries_no_password():
    runtime = SimpleNamespace(
        last_error="cannot check the champion models and snapshot: no @champion for churn in "
        "https://bob:hunter2-pass@tracking.internal:5000"
    )
    status, body = not_ready_response(runtime)
    assert status == 503
    message = json.loads(body)["error"]["message"]
    assert "hunter2-pass" not in message and "bob" not in message
    assert "https://***@tracking.internal:5000" in message
