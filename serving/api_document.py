"""The OpenAPI document the service publishes at `/docs.json`, made to tell the truth.

BentoML generates the document from the request and response models
(`serving.api_models`) but lists its own error bodies (`{"error": "<text>"}`
under 400, 404 and 500), which the service never sends: `RequestGuard`
answers every error of `/score` and `/portfolio` in the `ErrorResponse`
format. `service_openapi` rewrites the generated document for one
deployment (`ServiceSettings`):

- OpenAPI 3.1, as the schemas are JSON Schema 2020-12 (pydantic's);
- the request bodies as the service validates them (`ScoreRequest`,
  `PortfolioRequest`), with this deployment's accounts-per-request limit
  (`maxItems`) and `arr` as a number >= 0 in a what-if record;
- every status the guarded routes answer (400, 401 with a key, 409 for
  `/portfolio`, 413, 415, 422, 500, 503), each with the `ErrorResponse` schema,
  and BentoML's own 504 after the request timeout;
- the bearer scheme, required on both routes, when an API key is set;
- `/score` needs a body (`/portfolio` without one is the whole portfolio);
- `/readyz` answers 503 until the champions are loaded;
- the service's own description instead of BentoML's template;
- no component schema that nothing refers to (BentoML's task and error schemas).

`OpenApiDocument` is the ASGI middleware that serves the rewritten document.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from serving.api_guard import JSON_MEDIA_TYPE, ASGIApp, Message, Receive, Scope, Send
from serving.api_models import ErrorResponse, PortfolioRequest, ScoreRequest
from serving.online import NON_NEGATIVE_FEATURES
from serving.online_settings import ServiceSettings

DOCUMENT_PATH = "/docs.json"
# The schemas are pydantic's JSON Schema 2020-12 (null types, propertyNames): OpenAPI 3.1.
OPENAPI_VERSION = "3.1.0"
SERVICE_DESCRIPTION = (
    "Per-account churn and upsell scores with reasons (`POST /score`) and the portfolio "
    "summary (`POST /portfolio`). Every error of these routes is an `ErrorResponse`. "
    "See docs/api.md and docs/security.md in the repository."
)
SCHEMA_PREFIX = "#/components/schemas/"
SCHEMA_REF = SCHEMA_PREFIX + "{model}"
BEARER_SCHEME = "bearerAuth"

# The request bodies, as the service validates them.
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "/score": ScoreRequest,
    "/portfolio": PortfolioRequest,
}

# Errors both guarded routes can answer; `/portfolio` adds 409, a key adds 401.
COMMON_ERRORS: tuple[int, ...] = (400, 413, 415, 422, 500, 503)
# BentoML answers a request over its traffic timeout itself (outside the guard).
TIMEOUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
ROUTE_ERRORS: dict[str, tuple[int, ...]] = {
    "/score": COMMON_ERRORS,
    "/portfolio": (*COMMON_ERRORS, 409),
}


def error_descriptions(settings: ServiceSettings) -> dict[int, str]:
    """What each error status means, with the `error.type` it carries."""
    return {
        400: "invalid_json: the body is not JSON (bad_request: a Content-Length that is not a number)",
        401: "unauthorized: the API key is missing or wrong (send 'Authorization: Bearer <key>')",
        409: "no_snapshot: no nightly run is loaded, so there is no portfolio to summarise",
        413: f"payload_too_large: the body is over {settings.max_body_bytes} bytes",
        415: "unsupported_media_type: the body is not application/json",
        422: "validation_error: a field breaks a rule (type, range, unknown or missing field, "
        f"more than {settings.max_accounts} accounts, unknown feature or filter value); "
        "details name each field",
        500: "internal_error: the service failed; the server log has the cause",
        503: "not_ready: the champion models are not loaded yet (the message says why)",
    }


def model_schemas(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model and the models it refers to, as OpenAPI component schemas."""
    schema = model.model_json_schema(ref_template=SCHEMA_REF)
    components = schema.pop("$defs", {})
    components[model.__name__] = schema
    return components


def service_openapi(document: dict[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """The generated document rewritten to describe what this deployment answers."""
    spec = copy.deepcopy(document)
    spec["openapi"] = OPENAPI_VERSION
    spec.setdefault("info", {})["description"] = SERVICE_DESCRIPTION
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(model_schemas(ErrorResponse))
    descriptions = error_descriptions(settings)
    paths = spec.get("paths", {})
    for route, statuses in ROUTE_ERRORS.items():
        operation = paths.get(route, {}).get("post")
        if operation is None:
            continue
        if settings.api_key:
            statuses = (*statuses, 401)
            operation["security"] = [{BEARER_SCHEME: []}]
        responses = {
            str(code): answer
            for code, answer in operation.get("responses", {}).items()
            if str(code).startswith("2")
        }
        for status in sorted(statuses):
            responses[str(status)] = {
                "description": descriptions[status],
                "content": {
                    JSON_MEDIA_TYPE: {"schema": {"$ref": SCHEMA_REF.format(model="ErrorResponse")}}
                },
            }
        responses["504"] = {
            "description": "the answer took longer than the request timeout (120 s); "
            "BentoML's own body, not ErrorResponse",
            "content": {JSON_MEDIA_TYPE: {"schema": TIMEOUT_SCHEMA}},
        }
        operation["responses"] = responses
    if settings.api_key:
        components["securitySchemes"] = {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "The service's API key (PORTFOLIO_API_KEY)",
            }
        }
    for route, model in REQUEST_MODELS.items():
        request_body = paths.get(route, {}).get("post", {}).get("requestBody")
        if request_body is None:
            continue
        schemas.update(model_schemas(model))
        request_body["content"] = {
            JSON_MEDIA_TYPE: {"schema": {"$ref": SCHEMA_REF.format(model=model.__name__)}}
        }
        request_body["required"] = route == "/score"
    accounts = schemas.get("ScoreRequest", {}).get("properties", {}).get("accounts")
    if accounts is not None:
        accounts["maxItems"] = settings.max_accounts
    _document_non_negative_features(schemas.get("AccountRequest"))
    readiness = paths.get("/readyz", {}).get("get")
    if readiness is not None:
        readiness.setdefault("responses", {})["503"] = {
            "description": "Not ready: the champion models are not loaded (yet)"
        }
    _drop_unused_schemas(spec)
    return spec


def _drop_unused_schemas(spec: dict[str, Any]) -> None:
    """Remove the component schemas nothing refers to any more (BentoML's error and task
    schemas, the request schemas the pydantic ones replaced)."""
    schemas = spec.get("components", {}).get("schemas", {})
    while True:
        used = set()
        for name, schema in [("", spec.get("paths", {})), *schemas.items()]:
            for ref in _references(schema):
                if ref != name:
                    used.add(ref)
        unused = [name for name in schemas if name not in used]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def _references(node: Any) -> Iterator[str]:
    """The component names `node` refers to (`$ref` at any depth)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_PREFIX):
            yield ref.removeprefix(SCHEMA_PREFIX)
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _document_non_negative_features(account_schema: dict[str, Any] | None) -> None:
    """State in the `features` record schema that `arr` (when given) is a number >= 0."""
    branches = (account_schema or {}).get("properties", {}).get("features", {}).get("anyOf", [])
    for branch in branches:
        if branch.get("type") == "object":
            branch["properties"] = {
                name: {
                    "type": "number",
                    "minimum": 0,
                    "description": "never negative or null: it weighs the churn risk",
                }
                for name in sorted(NON_NEGATIVE_FEATURES)
            }


class OpenApiDocument:
    """ASGI middleware: `GET /docs.json` answers `service_openapi` of BentoML's document."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ServiceSettings | None = None,
        settings_factory: Callable[[], ServiceSettings] | None = None,
    ) -> None:
        if settings is None:
            if settings_factory is None:
                raise ValueError("OpenApiDocument needs settings or a settings_factory")
            settings = settings_factory()
        self.app = app
        self.settings = settings
        self._body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != DOCUMENT_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if self._body is None:
            start, raw = await _capture(self.app, scope, receive)
            if start.get("status") != 200:
                await send(start)
                await send({"type": "http.response.body", "body": raw, "more_body": False})
                return
            document = service_openapi(json.loads(raw), self.settings)
            self._body = json.dumps(document).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", JSON_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(self._body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    """Run `app` and keep its answer (start message and whole body) instead of sending it."""
    start: Message = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return start, b"".join(chunks)
