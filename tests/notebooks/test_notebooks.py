"""The notebooks: stored without outputs, parameterised, free of logic, and executed.

Storage and structure are checked on every run (fast). Execution (slow)
runs each notebook with papermill on a small generated portfolio, with the
project's Python as the kernel (a kernelspec written into a temporary
Jupyter path), and checks what the key cells produced:

- 01 on its defaults (a generated portfolio): every plot is drawn;
- 02 on the shared test portfolio with a temporary MLflow store (its
  default), registering and promoting: both targets get a second version,
  the gate decides, and the store named by MLFLOW_TRACKING_URI and
  MLFLOW_REGISTRY_URI is untouched;
- 03 walk-forward: every backtest date is scored with models trained as of it.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK_NAMES = ("01_explore_portfolio", "02_retrain", "03_backtest")
KERNEL_NAME = "portfolio-tests"
# Parameters every notebook takes, and the ones those that train take too.
COMMON_PARAMETERS = {"sources", "as_of", "horizon_days"}
TRAINING_PARAMETERS = {"n_trials", "tracking_uri"}
# What notebook code may import: the project's packages and the libraries they draw with.
ALLOWED_IMPORTS = {
    "features",
    "training",
    "serving",
    "pandas",
    "matplotlib",
    "optuna",
    "rich",
    "os",
    "tempfile",
    "pathlib",
    "dataclasses",
}


def _notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _code(cell: nbformat.NotebookNode) -> str:
    """A code cell's source without IPython magics (`%matplotlib inline`)."""
    return "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))


def _parameters(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged `parameters`"
    values = {}
    for node in ast.parse(_code(cells[0])).body:
        assert isinstance(node, ast.Assign), "the parameters cell only assigns literals"
        (target,) = node.targets
        values[target.id] = ast.literal_eval(node.value)
    return values


# ------------------------------------------------------------------ storage and structure


def test_every_notebook_is_here() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NOTEBOOK_NAMES)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} holds outputs"
            assert cell.execution_count is None, f"{path.name} cell {index} has a count"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebooks_are_parameterised(name: str) -> None:
    parameters = _parameters(_notebook(name))
    expected = COMMON_PARAMETERS | (
        TRAINING_PARAMETERS if name != "01_explore_portfolio" else set()
    )
    assert expected <= set(parameters)
    # by default: a generated portfolio, the latest date, and never the user's MLflow store
    assert parameters["sources"] is None and parameters["as_of"] is None
    assert parameters.get("tracking_uri") is None
    if name == "02_retrain":
        assert parameters["register"] is False and parameters["promote"] is False


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebooks_hold_no_logic_of_their_own(name: str) -> None:
    """No function or class is defined in a notebook; it imports only the packages it calls."""
    for cell in _notebook(name).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(_code(cell))):
            assert not isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            ), f"{name}: logic defined in the notebook (put it in a package, with tests)"
            if isinstance(node, ast.Import):
                modules = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                modules = {(node.module or "").split(".")[0]}
            else:
                continue
            assert modules <= ALLOWED_IMPORTS, f"{name} imports {modules - ALLOWED_IMPORTS}"


# ------------------------------------------------------------------ execution


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernelspec running this interpreter (the project's .venv), on a temporary Jupyter path."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "portfolio tests",
                "language": "python",
            }
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        yield KERNEL_NAME


def _execute(name: str, out_dir: Path, kernel: str, **parameters: Any) -> nbformat.NotebookNode:
    import papermill

    output = out_dir / f"{name}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(output),
        parameters=parameters,
        kernel_name=kernel,
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        execution_timeout=600,
    )
    return nbformat.read(output, as_version=4)


def _tagged_text(notebook: nbformat.NotebookNode, tag: str) -> str:
    (cell,) = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    return "\n".join(
        output["data"].get("text/plain", "") for output in cell.outputs if "data" in output
    )


def _images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    )


@pytest.mark.slow
def test_explore_runs_on_its_defaults(kernel: str, tmp_path: Path) -> None:
    executed = _execute("01_explore_portfolio", tmp_path, kernel)
    # coverage, ARR over time, base rates, correlations, distributions, concentration
    assert _images(executed) == 6
    stored = _notebook("01_explore_portfolio")  # executing leaves the stored notebook as it was
    assert all(not cell.get("outputs") for cell in stored.cells)


@pytest.mark.slow
def test_retrain_registers_and_gates_in_a_temporary_store(
    kernel: str, nightly_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users_store = tmp_path / "users-store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{users_store}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{users_store}")
    executed = _execute(
        "02_retrain",
        tmp_path,
        kernel,
        sources=str(nightly_sources),
        n_trials=3,
        register=True,
        promote=True,
    )
    assert not users_store.parent.exists(), "the notebook wrote to MLFLOW_TRACKING_URI's store"
    registered = _tagged_text(executed, "registration")
    assert "churn" in registered and "upsell" in registered
    decisions = _tagged_text(executed, "promotion")
    assert "passes the gate" in decisions or "than v1" in decisions
    versions = _tagged_text(executed, "versions").splitlines()[1:]
    # v1 of each target is the bootstrapped champion, v2 the challenger; one champion each
    assert len(versions) == 4
    assert sum("champion" in line for line in versions) == 2
    assert sum("promoted" in line or "rejected" in line for line in versions) == 4
    assert _images(executed) == 5  # calibration and gain per target, importance


@pytest.mark.slow
def test_backtest_walks_forward(kernel: str, nightly_sources: Path, tmp_path: Path) -> None:
    executed = _execute("03_backtest", tmp_path, kernel, sources=str(nightly_sources), n_trials=3)
    summary = _tagged_text(executed, "backtest")
    for target in ("churn", "upsell"):
        assert summary.count(f"{target} trained as of") == 3
    assert "False" not in summary  # every date is out of time for a walk-forward model
    assert _images(executed) == 3
