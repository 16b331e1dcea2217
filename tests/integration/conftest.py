"""Fixtures of the integration tests that start the scoring service (see `service_harness`).

- `service_home`: per test module, a private copy of the session's champion store
  and nightly run folder, so promotions and new snapshots made by one module stay
  in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from service_harness import ServiceHome, make_service_home


@pytest.fixture(scope="module")
def service_home(
    champion_store: str, nightly_run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ServiceHome:
    return make_service_home(champion_store, nightly_run_dir, tmp_path_factory.mktemp("service"))
