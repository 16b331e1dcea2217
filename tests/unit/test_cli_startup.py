"""The `portfolio` command starts without the heavy libraries: each command imports what it uses.

`portfolio --help`, `validate`, `features` and `generate` must not wait for
MLflow, scikit-learn, BentoML, LightGBM or Spark to load (seconds each).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("mlflow", "sklearn", "bentoml", "lightgbm", "pyspark", "optuna", "serving.batch")


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_registering_the_commands_loads_no_heavy_library() -> None:
    loaded = _modules_after("from serving.cli import commands")
    assert "serving.cli.train_commands" in loaded  # the commands did register
    assert sorted(name for name in HEAVY if name in loaded) == []


def test_help_loads_no_heavy_library() -> None:
    code = (
        "from serving.cli import commands, app\n"
        "from typer.testing import CliRunner\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0 and 'features' in result.output, result.output"
    )
    assert sorted(name for name in HEAVY if name in _modules_after(code)) == []
