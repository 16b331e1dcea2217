"""`portfolio serve --workers N` reaches BentoML as a config option of the service."""

from __future__ import annotations

from serving.online_launch import BENTOML_OPTIONS_ENV, serve_environment
from serving.online_settings import ServiceSettings
from serving.service import PortfolioService


def test_workers_become_a_bentoml_option_of_the_service() -> None:
    env = serve_environment(ServiceSettings(), {}, workers=2)
    assert env[BENTOML_OPTIONS_ENV] == f"services.{PortfolioService.name}.workers=2"


def test_options_already_set_are_kept_before_the_workers() -> None:
    env = serve_environment(
        ServiceSettings(), {BENTOML_OPTIONS_ENV: "api_server.metrics.enabled=true"}, workers=3
    )
    assert env[BENTOML_OPTIONS_ENV].split() == [
        "api_server.metrics.enabled=true",
        "services.portfolio.workers=3",
    ]


def test_without_workers_the_options_are_left_alone() -> None:
    assert BENTOML_OPTIONS_ENV not in serve_environment(ServiceSettings(), {})
