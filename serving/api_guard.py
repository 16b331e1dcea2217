"""The service's front door: authentication, request limits and one error format.

`RequestGuard` is an ASGI middleware placed in front of the scoring routes
(`/score`, `/portfolio`). Before a request reaches a handler it

- checks the API key when one is configured (`Authorization: Bearer <key>`,
  compared in constant time) -> 401;
- accepts only POST -> 405, and only JSON bodies (no pickle, Arrow or forms) -> 415;
- reads the body up to the size limit -> 413 beyond it.

After the handler it rewrites any error answer into the documented format

    {"error": {"type": "...", "message": "...", "details": [{"loc": [...], "msg": "...", "type": "..."}]}}

so BentoML's own validation answers (malformed JSON, wrong types, missing or
extra fields, NaN) read the same as the service's. Health, readiness and
metrics routes are not guarded.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"


@dataclass(eq=False)
class ApiError(Exception):
    """A client error the service answers with `status` and the documented body."""

    status: int
    type: str
    message: str
    details: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    def body(self) -> bytes:
        return error_body(self.type, self.message, self.details)


def error_body(type_: str, message: str, details: Iterable[Mapping[str, Any]] = ()) -> bytes:
    """The documented error document as JSON bytes."""
    document = {
        "error": {
            "type": type_,
            "message": message,
            "details": [
                {
                    "loc": list(detail.get("loc", [])),
                    "msg": str(detail.get("msg", "")),
                    "type": str(detail.get("type", type_)),
                }
                for detail in details
            ],
        }
    }
    return json.dumps(document, allow_nan=False).encode("utf-8")


def validation_error(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> ApiError:
    """A 422 for one broken rule at `loc` in the request body."""
    return ApiError(
        422,
        "validation_error",
        f"request body is invalid at {format_loc(loc)}: {msg}",
        ({"loc": list(loc), "msg": msg, "type": type_},),
    )


def format_loc(loc: Sequence[str | int]) -> str:
    """`["accounts", 0, "features"]` -> `accounts[0].features` (`body` when empty)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def translate_error_document(status: int, raw: bytes) -> tuple[int, bytes]:
    """Rewrite an error answer of the framework into the documented format.

    BentoML answers a pydantic validation failure with 400 and
    `{"error": "<n> validation error(s) for ...", "detail": [{"type", "loc", "msg"}, ...]}`;
    malformed JSON shows up there as a `json_invalid` detail. Answers already in
    the documented format pass unchanged.
    """
    try:
        document = json.loads(raw) if raw else None
    except ValueError:
        document = None
    if isinstance(document, list) and len(document) == 1:
        document = document[0]
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return status, raw
    if status >= 500:
        return status, error_body(
            "internal_error", "the service failed to answer; the server log has the cause"
        )
    details = document.get("detail") if isinstance(document, dict) else None
    if isinstance(details, list) and details:
        cleaned = [
            {
                "loc": [part for part in d.get("loc", []) if part != "__root__"],
                "msg": str(d.get("msg", "")).removeprefix("Value error, "),
                "type": d.get("type", "value_error"),
            }
            for d in details
            if isinstance(d, dict)
        ]
        cleaned = fold_union_errors(cleaned)
        if any(d["type"] == "json_invalid" for d in cleaned):
            message = next(d["msg"] for d in cleaned if d["type"] == "json_invalid")
            return 400, error_body("invalid_json", f"the body is not valid JSON: {message}")
        first = cleaned[0]
        message = f"request body is invalid at {format_loc(first['loc'])}: {first['msg']}"
        if len(cleaned) > 1:
            message += f" (and {len(cleaned) - 1} more)"
        return 422, error_body("validation_error", message, cleaned)
    text = document.get("error") if isinstance(document, dict) else None
    if not isinstance(text, str):
        text = raw.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    return status, error_body(_TYPES_BY_STATUS.get(status, "bad_request"), text)


# The branches of `serving.api_models.FeatureValue` as pydantic names them in a `loc`.
FEATURE_VALUE_BRANCHES: frozenset[str] = frozenset({"float", "bool", "str", "none"})


def fold_union_errors(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per value that matched no branch of a union, instead of one per branch.

    pydantic reports a value that fits none of `number | bool | string | null`
    once per branch (`...features.arr.float`, `...arr.bool`, `...arr.str`).
    """
    folded: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for detail in details:
        loc = detail["loc"]
        if not loc or loc[-1] not in FEATURE_VALUE_BRANCHES:
            folded.append(detail)
            continue
        parent = tuple(loc[:-1])
        siblings = [
            d
            for d in details
            if len(d["loc"]) == len(loc)
            and tuple(d["loc"][:-1]) == parent
            and d["loc"][-1] in FEATURE_VALUE_BRANCHES
        ]
        if len(siblings) < 2:
            folded.append(detail)
            continue
        if parent in seen:
            continue
        seen.add(parent)
        finite = any(d["type"] == "finite_number" for d in siblings)
        folded.append(
            {
                "loc": list(parent),
                "msg": "must be a finite number (no NaN or infinity)"
                if finite
                else "must be a number, a string, true/false or null",
                "type": "finite_number" if finite else "feature_value_type",
            }
        )
    return folded


_TYPES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


@dataclass(frozen=True)
class GuardSettings:
    """What the guard enforces; see `serving.online.ServiceSettings` for the env variables."""

    api_key: str | None
    max_body_bytes: int
    protected_paths: frozenset[str] = frozenset({"/score", "/portfolio"})


class RequestGuard:
    """ASGI middleware: auth, method, media type and size checks; uniform error bodies."""

    def __init__(
        self,
        app: ASGIApp,
        settings: GuardSettings | None = None,
        settings_factory: Callable[[], GuardSettings] | None = None,
    ) -> None:
        if settings is None:
            if settings_factory is None:
                raise ValueError("RequestGuard needs settings or a settings_factory")
            settings = settings_factory()
        self.app = app
        self.settings = settings
        self._api_key = settings.api_key.encode("utf-8") if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.settings.protected_paths:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        try:
            self._check_headers(scope, headers)
            body = await _read_body(receive, self.settings.max_body_bytes)
        except ApiError as error:
            await _send_error(send, error)
            return
        except _ClientGone:
            return
        await self.app(scope, _replay(body, receive), _ErrorRewriter(send))

    def _check_headers(self, scope: Scope, headers: Mapping[str, str]) -> None:
        if self._api_key is not None:
            authorization = headers.get("authorization", "")
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode("utf-8"), self._api_key
            ):
                raise ApiError(
                    401,
                    "unauthorized",
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                )
        if scope["method"] != "POST":
            raise ApiError(405, "method_not_allowed", f"{scope['path']} accepts POST only")
        media_type = headers.get("content-type", JSON_MEDIA_TYPE).split(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"content type {media_type!r} is not accepted; send {JSON_MEDIA_TYPE}",
            )
        declared = headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise ApiError(400, "bad_request", "Content-Length is not a number") from None
            if length > self.settings.max_body_bytes:
                raise _too_large(self.settings.max_body_bytes)


class _ClientGone(Exception):
    pass


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than the limit of {limit} bytes")


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send: Send, error: ApiError) -> None:
    await _send_json(send, error.status, error.body(), _extra_headers(error.status))


def _extra_headers(status: int) -> list[tuple[bytes, bytes]]:
    if status == 401:
        return [(b"www-authenticate", b"Bearer")]
    if status == 405:
        return [(b"allow", b"POST")]
    return []


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _ErrorRewriter:
    """Wraps `send`: success answers stream through, error answers are rewritten."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if message["status"] < 400:
                await self._send(message)
            else:
                self._start = message
            return
        if kind == "http.response.body" and self._start is not None:
            self._chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = translate_error_document(self._start["status"], b"".join(self._chunks))
            kept = [
                (name, value)
                for name, value in self._start.get("headers", [])
                if name.lower() not in (b"content-length", b"content-type")
            ]
            self._start = None
            await _send_json(self._send, status, body, kept)
            return
        await self._send(message)


class QuietClientErrors(logging.Filter):
    """Logs a rejected request body as one line instead of a traceback.

    BentoML logs every request that fails pydantic validation with the full
    traceback; a client's bad JSON is not a server fault.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "ValidationError":
            count = getattr(exc, "error_count", lambda: 0)()
            record.msg = f"{record.getMessage()}: rejected ({count} validation error(s))"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_quiet_client_errors(logger_name: str = "bentoml._internal.server.http_app") -> None:
    """Attach `QuietClientErrors` to BentoML's request-error logger (once)."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, QuietClientErrors) for f in target.filters):
        target.addFilter(QuietClientErrors())
