"""The service's front door: auth, limits, media types and the error format."""

from __future__ import annotations

import json
import logging

import anyio
import httpx
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.api_guard import (
    GuardSettings,
    QuietClientErrors,
    RequestGuard,
    error_body,
    format_loc,
    translate_error_document,
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accounts: list[str]


async def _score(request: Request) -> JSONResponse:
    # Mimics how BentoML answers a body that fails pydantic validation.
    try:
        body = _Body.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse(
            {
                "error": f"{exc.error_count()} validation error",
                "detail": exc.errors(include_context=False, include_input=False),
            },
            status_code=400,
        )
    return JSONResponse({"results": body.accounts})


async def _crash(request: Request) -> JSONResponse:
    return JSONResponse({"error": "An unexpected error has occurred"}, status_code=500)


async def _livez(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


class _Client:
    """A synchronous facade over httpx's ASGI transport (no server, no network)."""

    def __init__(self, app) -> None:
        self._transport = httpx.ASGITransport(app=app)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=self._transport, base_url="http://testserver"
            ) as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        return anyio.run(call)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)


def _client(api_key: str | None = None, max_body_bytes: int = 1000) -> _Client:
    app = Starlette(
        routes=[
            Route("/score", _score, methods=["POST"]),
            Route("/portfolio", _crash, methods=["POST"]),
            Route("/livez", _livez),
        ]
    )
    guarded = RequestGuard(app, GuardSettings(api_key=api_key, max_body_bytes=max_body_bytes))
    return _Client(guarded)


def test_valid_request_passes_through_unchanged():
    response = _client().post("/score", json={"accounts": ["A1"]})
    assert response.status_code == 200
    assert response.json() == {"results": ["A1"]}


def test_malformed_json_is_400_invalid_json():
    response = _client().post(
        "/score", content=b'{"accounts": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_json"


def test_schema_errors_are_422_naming_the_field():
    response = _client().post("/score", json={"accounts": ["A1"], "extra": 1})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["details"][0]["loc"] == ["extra"]
    assert error["details"][0]["type"] == "extra_forbidden"
    assert "extra" in error["message"]


def test_server_errors_never_leak_framework_text():
    response = _client().post("/portfolio", json={})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "type": "internal_error",
            "message": "the service failed to answer; the server log has the cause",
            "details": [],
        }
    }


@pytest.mark.parametrize(
    "content_type",
    ["application/vnd.bentoml+pickle", "application/x-www-form-urlencoded", "text/plain"],
)
def test_non_json_media_types_are_415(content_type):
    response = _client().post("/score", content=b"x", headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "unsupported_media_type"


def test_json_with_charset_is_accepted():
    response = _client().post(
        "/score",
        content=json.dumps({"accounts": []}).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


def test_get_is_405_with_allow_header():
    response = _client().get("/score")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "method_not_allowed"


def test_body_over_the_limit_is_413_by_declared_length():
    response = _client(max_body_bytes=50).post("/score", json={"accounts": ["A" * 100]})
    assert response.status_code == 413
    assert "50 bytes" in response.json()["error"]["message"]


def test_body_over_the_limit_is_413_when_streamed_without_length():
    async def chunks():
        yield b'{"accounts": ["'
        yield b"A" * 100
        yield b'"]}'

    response = _client(max_body_bytes=50).post(
        "/score", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_api_key_required_when_configured():
    client = _client(api_key="s3cret")
    missing = client.post("/score", json={"accounts": []})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/score", json={"accounts": []}, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    basic = client.post("/score", json={"accounts": []}, headers={"authorization": "Basic s3cret"})
    assert basic.status_code == 401
    right = client.post("/score", json={"accounts": []}, headers={"authorization": "Bearer s3cret"})
    assert right.status_code == 200


def test_auth_is_checked_before_the_body_is_judged():
    response = _client(api_key="k").post(
        "/score", content=b"not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401


def test_unguarded_paths_stay_open():
    assert _client(api_key="k").get("/livez").status_code == 200


def test_error_documents_already_in_format_pass_unchanged():
    body = error_body("not_ready", "models are loading")
    assert translate_error_document(503, body) == (503, body)


def test_bentoml_list_wrapped_errors_are_translated():
    status, body = translate_error_document(404, b'[{"error": "no such thing"}]')
    assert status == 404
    assert json.loads(body)["error"] == {
        "type": "not_found",
        "message": "no such thing",
        "details": [],
    }


def test_format_loc():
    assert format_loc(["accounts", 0, "features", "arr"]) == "accounts[0].features.arr"
    assert format_loc([]) == "body"


def test_quiet_client_errors_drops_the_traceback():
    try:
        _Body.model_validate_json(b"{}")
    except ValidationError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "Exception on %s", ("/score",), (type(exc), exc, None)
        )
    assert QuietClientErrors().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == "Exception on /score: rejected (1 validation error(s))"
    assert record.levelno == logging.INFO


def test_union_branch_errors_fold_into_one_per_value():
    from serving.api_models import ScoreRequest

    def details(body: bytes) -> list[dict]:
        try:
            ScoreRequest.model_validate_json(body)
        except ValidationError as exc:
            raw = {"error": "x", "detail": exc.errors(include_context=False, include_input=False)}
        status, translated = translate_error_document(400, json.dumps(raw).encode())
        assert status == 422
        return json.loads(translated)["error"]["details"]

    nan = details(b'{"accounts": [{"account_id": "A", "features": {"arr": NaN, "x": 1}}]}')
    assert nan == [
        {
            "loc": ["accounts", 0, "features", "arr"],
            "msg": "must be a finite number (no NaN or infinity)",
            "type": "finite_number",
        }
    ]
    nested = details(b'{"accounts": [{"account_id": "A", "features": {"plan": [1], "y": {}}}]}')
    assert [d["loc"][-1] for d in nested] == ["plan", "y"]
    assert {d["msg"] for d in nested} == {"must be a number, a string, true/false or null"}


def test_feature_values_keep_their_json_type():
    from serving.api_models import ScoreRequest

    request = ScoreRequest.model_validate_json(
        b'{"accounts": [{"account_id": "A", "features": '
        b'{"a": 1, "b": 2.5, "c": "3", "d": true, "e": null}}]}'
    )
    assert request.accounts[0].features == {"a": 1.0, "b": 2.5, "c": "3", "d": True, "e": None}
