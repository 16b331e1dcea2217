"""The OpenAPI document of the service tells what it answers (serving.api_document).

Starts from the document BentoML generates for `serving.service.PortfolioService`
(no server), rewrites it with `service_openapi` and checks what a client reads
there against what the guard and the handlers send.
"""

from __future__ import annotations

import json

import anyio
import httpx
import jsonschema
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from serving.api_document import OpenApiDocument, service_openapi
from serving.api_guard import ApiError, error_body, translate_error_document, validation_error
from serving.online_settings import ServiceSettings

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def generated() -> dict:
    """BentoML's own document for the service, as it serves it (JSON)."""
    from serving.service import PortfolioService

    return json.loads(json.dumps(PortfolioService.openapi_spec.asdict()))


def _responses(spec: dict, route: str) -> dict:
    return spec["paths"][route]["post"]["responses"]


def _validator(spec: dict, ref: str) -> jsonschema.Draft202012Validator:
    """A validator for the component `ref` of `spec` (its references resolved in `spec`)."""
    return jsonschema.Draft202012Validator({"$ref": ref, "components": spec["components"]})


def test_bentoml_documents_error_bodies_the_service_never_sends(generated):
    """Why the rewrite exists: the generated document promises `{"error": "<text>"}`."""
    assert _responses(generated, "/score")["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvalidArgument"
    }


def test_every_error_status_of_the_guarded_routes_is_documented(generated):
    spec = service_openapi(generated, ServiceSettings())
    expected = {"200", "400", "413", "415", "422", "500", "503", "504"}
    assert set(_responses(spec, "/score")) == expected
    assert set(_responses(spec, "/portfolio")) == expected | {"409"}
    for route in ("/score", "/portfolio"):
        for status, answer in _responses(spec, route).items():
            if status not in ("200", "504"):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (route, status)
                assert answer["description"].split(":")[0] in {
                    "invalid_json",
                    "no_snapshot",
                    "payload_too_large",
                    "unsupported_media_type",
                    "validation_error",
                    "internal_error",
                    "not_ready",
                }
    assert "security" not in spec["paths"]["/score"]["post"]
    assert "securitySchemes" not in spec["components"]


def test_an_api_key_is_documented_as_bearer_security_with_401(generated):
    spec = service_openapi(generated, ServiceSettings(api_key="s3cret-zq"))
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The service's API key (PORTFOLIO_API_KEY)",
    }
    for route in ("/score", "/portfolio"):
        assert spec["paths"][route]["post"]["security"] == [{"bearerAuth": []}]
        assert "401" in _responses(spec, route)
    for route in ("/livez", "/readyz", "/metrics"):
        assert "security" not in spec["paths"][route]["get"]
    assert "s3cret-zq" not in json.dumps(spec)


def test_request_bodies_are_the_models_the_service_validates(generated):
    spec = service_openapi(generated, ServiceSettings(max_accounts=250))
    assert spec["openapi"] == "3.1.0"
    score = spec["paths"]["/score"]["post"]["requestBody"]
    portfolio = spec["paths"]["/portfolio"]["post"]["requestBody"]
    assert score["required"] is True and portfolio["required"] is False
    assert score["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScoreRequest"
    }
    schemas = spec["components"]["schemas"]
    assert schemas["ScoreRequest"]["properties"]["accounts"]["maxItems"] == 250
    score_body = _validator(spec, "#/components/schemas/ScoreRequest")
    assert score_body.is_valid({"accounts": [{"account_id": "A", "features": {"arr": 0}}]})
    assert not score_body.is_valid({"accounts": [{"account_id": "A"}] * 251})
    assert not score_body.is_valid({"accounts": [{"account_id": "A", "features": {"arr": -1}}]})
    assert not score_body.is_valid({"accounts": [{"account_id": "A", "features": {"arr": None}}]})
    assert not score_body.is_valid({"accounts": [{"account_id": "A", "features": {"": 1}}]})
    portfolio_body = _validator(spec, "#/components/schemas/PortfolioRequest")
    assert portfolio_body.is_valid({"segment": None, "region": "EMEA"})
    assert not portfolio_body.is_valid({"segment": ""})
    assert not portfolio_body.is_valid({"colour": "red"})


def test_readiness_documents_503_and_the_description_is_the_services(generated):
    spec = service_openapi(generated, ServiceSettings())
    assert set(spec["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert "BentoML" not in spec["info"]["description"]
    assert "POST /score" in spec["info"]["description"]


def test_every_reference_resolves_and_unused_schemas_are_gone(generated):
    spec = service_openapi(generated, ServiceSettings(api_key="k"))
    schemas = spec["components"]["schemas"]
    text = json.dumps(spec)
    prefix = "#/components/schemas/"
    referenced = {
        part.split('"')[0] for part in text.split(f'"$ref": "{prefix}')[1:] if part.split('"')[0]
    }
    assert referenced <= set(schemas)
    assert set(schemas) == referenced
    for name in ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse"):
        assert name not in schemas


def test_the_error_bodies_the_service_sends_match_the_documented_schema(generated):
    spec = service_openapi(generated, ServiceSettings())
    documented = _validator(spec, ERROR_REF)
    bentoml_validation = json.dumps(
        {
            "error": "1 validation error",
            "detail": [{"type": "missing", "loc": ["accounts", 0], "msg": "Field required"}],
        }
    ).encode()
    bodies = [
        ApiError(401, "unauthorized", "missing or wrong API key").body(),
        validation_error(["accounts", 3, "features", "arr"], "must be at least 0, got -1").body(),
        error_body("not_ready", "the service is not ready: loading"),
        translate_error_document(400, bentoml_validation)[1],
        translate_error_document(400, b'{"error": "bad", "detail": [{"type": "json_invalid"}]}')[1],
        translate_error_document(500, b"Internal Server Error")[1],
    ]
    for body in bodies:
        documented.validate(json.loads(body))
    # What BentoML answers on its own is not the documented format.
    assert not documented.is_valid({"error": "1 validation error", "detail": "..."})


def _app(document: dict) -> Starlette:
    async def docs(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def other(request: Request) -> PlainTextResponse:
        return PlainTextResponse("untouched")

    return Starlette(
        routes=[
            Route("/docs.json", docs, methods=["GET", "POST"]),
            Route("/other", other),
        ]
    )


def _get(app, method: str, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path)

    return anyio.run(call)


def test_the_middleware_serves_the_rewritten_document_and_nothing_else(generated):
    settings = ServiceSettings(api_key="k", max_accounts=7)
    app = OpenApiDocument(_app(generated), settings=settings)
    first = _get(app, "GET", "/docs.json")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json() == service_openapi(generated, settings)
    assert _get(app, "GET", "/docs.json").content == first.content
    assert _get(app, "GET", "/other").text == "untouched"
    assert _get(app, "POST", "/docs.json").json()["openapi"] == generated["openapi"]


def test_the_middleware_passes_a_failed_document_answer_through(generated):
    async def broken(request: Request) -> PlainTextResponse:
        return PlainTextResponse("boom", status_code=500)

    app = OpenApiDocument(
        Starlette(routes=[Route("/docs.json", broken)]), settings=ServiceSettings()
    )
    answer = _get(app, "GET", "/docs.json")
    assert answer.status_code == 500 and answer.text == "boom"


def test_the_middleware_needs_settings():
    with pytest.raises(ValueError, match="settings"):
        OpenApiDocument(_app({}))
