"""Load: 60 s of mixed traffic at 8 and then 32 clients, a champion swap in the middle of each.

The service (`bentoml serve`, one worker, polling the registry every second)
answers by-id and what-if `/score` requests and `/portfolio` summaries
(`benchmarks.load.traffic_plan`) from clients that never retry. Half-way
through each level another registered churn version is promoted: no request
may fail, and once the first answer of the new version arrived no later
request may be answered by the old one. `make reliability` runs it; the
figures are printed (`pytest -rP`) and recorded in docs/benchmarks.md ("Load").
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from service_harness import Server, ServiceHome, start_service, stop, wait_for

from benchmarks.load import LEVELS, level_figures, register_copy, run_level, traffic_plan
from benchmarks.serving import feature_records
from training.registry import champion_version

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.reliability]

SECONDS_PER_LEVEL = 60.0


@pytest.fixture(scope="module")
def load_server(service_home: ServiceHome) -> Iterator[Server]:
    server = start_service(service_home.env("load"), service_home.root / "load.log")
    try:
        wait_for(server, "/readyz")
        yield server
    finally:
        stop(server.process)


def test_mixed_traffic_with_a_champion_swap_at_8_and_32_clients(
    load_server: Server, service_home: ServiceHome
) -> None:
    uri = service_home.tracking_uri
    ids, records = feature_records(service_home.run_dir)
    segment = str(service_home.features["segment"].dropna().iloc[0])
    plan = traffic_plan(ids, records, segment)
    assert {r.label for r in plan} == {"by id", "what-if", "by id x10", "portfolio"}
    current = champion_version("churn", uri=uri)
    assert current is not None

    figures = []
    for clients in LEVELS:
        new = register_copy(uri, "churn", current)
        result, swap = run_level(
            load_server.url, plan, clients, SECONDS_PER_LEVEL, uri, current, new
        )
        figures.append(level_figures(result, swap))
        assert not result.failed, [s.error for s in result.failed[:5]]
        assert swap.first_new_at is not None, "no answer carried the new champion"
        assert swap.first_new_at > swap.promoted_at
        assert swap.old_after_new == 0
        assert swap.other_versions == ()
        after = [
            s for s in result.samples if s.version is not None and s.started > swap.first_new_at
        ]
        assert after and {s.version for s in after} == {new}
        assert {s.label for s in result.samples} == {"by id", "what-if", "by id x10", "portfolio"}
        current = new
    print(json.dumps(figures, indent=1))
