"""The online scoring service (BentoML): `bentoml serve serving.service:PortfolioService`.

A thin class: it reads its settings, starts the runtime that loads the
champion models and the feature snapshot (and swaps in new ones), declares the
request and response models, and hands each request to a library function in
`serving.online`. `portfolio serve` starts it; docs/api.md documents it.

Routes: `POST /score`, `POST /portfolio` (guarded: API key, JSON only, size
limit; see `serving.api_guard`), and BentoML's `/livez`, `/readyz` (ready once
both champions are loaded and warmed up), `/metrics` (Prometheus) and
`/docs.json` (OpenAPI, rewritten by `serving.api_document` to list
the error answers, the API key and this deployment's limits).
"""

from __future__ import annotations

import bentoml
from starlette.responses import Response

from serving.api_document import OpenApiDocument
from serving.api_guard import RequestGuard, install_quiet_client_errors
from serving.api_models import (
    AccountRequest,
    PortfolioRequest,
    PortfolioSummary,
    ScoreRequest,
    ScoreResponse,
)
from serving.online import (
    ServiceMetrics,
    answer_portfolio,
    answer_score,
    build_runtime,
    configure_registry_client,
    configure_service_logging,
    guard_settings_from_env,
)
from serving.online_runtime import drain_on_sigterm
from serving.online_settings import ServiceSettings

FIRST_LOAD_WAIT_SECONDS = 120.0


@bentoml.service(
    name="portfolio",
    workers=1,
    traffic={"timeout": 120},
    metrics={"enabled": True, "namespace": "portfolio"},
    # No OpenTelemetry spans on these routes: BentoML samples no traces by default
    # (sample rate 0), yet creating the spans cost 0.2-1 ms per request here.
    tracing={
        "excluded_urls": ["/score", "/portfolio", "/livez", "/readyz", "/healthz", "/metrics"]
    },
    labels={"project": "account-portfolio"},
)
class PortfolioService:
    """Per-account churn and upsell scores with reasons, and the portfolio summary."""

    def __init__(self) -> None:
        install_quiet_client_errors()
        configure_service_logging()
        configure_registry_client()
        self.settings = ServiceSettings.from_env()
        self.metrics = ServiceMetrics.create()
        self.runtime = build_runtime(self.settings, in_bento=PortfolioService.bento is not None)
        self.runtime.start()
        # Accept connections only once the first load ended (BentoML creates the
        # service before its worker listens): a restarted worker then takes no
        # requests it would answer 503; with no registry it starts not ready.
        self.runtime.wait_first_check(FIRST_LOAD_WAIT_SECONDS)
        self.draining = False
        drain_on_sigterm(self.settings.drain_seconds, self._start_draining)

    def _start_draining(self) -> None:
        self.draining = True

    @bentoml.on_shutdown
    def stop_refreshing(self) -> None:
        self.runtime.stop()

    def __is_ready__(self) -> bool:
        return self.runtime.ready and not self.draining

    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(self, accounts: list[AccountRequest]) -> Response:
        """Score accounts given by id (snapshot features) or by a full feature record.

        One result per account, in order: its scores with reasons and model
        versions, or `{"account_id": ..., "error": ...}` when it cannot be scored.
        """
        status, body = await answer_score(self.runtime, self.settings, self.metrics, accounts)
        return Response(body, status_code=status, media_type="application/json")

    @bentoml.api(route="/portfolio", input_spec=PortfolioRequest, output_spec=PortfolioSummary)
    async def portfolio(
        self,
        segment: str | None = None,
        owner_id: str | None = None,
        industry: str | None = None,
        region: str | None = None,
    ) -> Response:
        """The portfolio summary (as in portfolio.json) of the snapshot, optionally filtered."""
        filters = PortfolioRequest(
            segment=segment, owner_id=owner_id, industry=industry, region=region
        ).filters()
        status, body = await answer_portfolio(self.runtime, filters)
        return Response(body, status_code=status, media_type="application/json")


PortfolioService.add_asgi_middleware(RequestGuard, settings_factory=guard_settings_from_env)
PortfolioService.add_asgi_middleware(OpenApiDocument, settings_factory=ServiceSettings.from_env)
