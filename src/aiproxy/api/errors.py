"""Map every failure under /api to the envelope with a matching HTTP status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AppError
from .envelope import FastJSONResponse, error
from .request_guard import RequestGuard

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
}
# Error texts name the field but never echo much of the input: a location can hold a key taken
# from the body (a model_mapping entry), a message the value a validator refused.
MAX_FIELD_PART = 64
MAX_MESSAGE = 300


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_validation_error(err: dict[str, Any]) -> str:
    """One readable sentence naming the offending field, e.g. `name: field required`."""
    loc = [
        _clip(str(part), MAX_FIELD_PART)
        for part in err.get("loc", ())
        if part not in ("body", "query", "path", "header")
    ]
    field = ".".join(loc[:8])
    kind = err.get("type", "")
    if kind == "missing":
        if not field:
            return "request body is required"
        reason = "field required"
    elif kind == "json_invalid":
        return "request body is not valid JSON"
    elif kind in ("model_attributes_type", "model_type") or (kind == "dict_type" and not field):
        return "request body must be a JSON object"
    else:
        reason = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return _clip(f"{field}: {reason}" if field else reason, MAX_MESSAGE)


async def _app_error(_request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, AppError)
    return error(exc.status_code, exc.message, exc.headers or None)


async def _validation_error(_request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    message = describe_validation_error(errors[0]) if errors else "invalid request"
    return error(400, message)


async def _http_error(_request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    known = _HTTP_MESSAGES.get(exc.status_code)
    message = known or (exc.detail if isinstance(exc.detail, str) else "error")
    return error(exc.status_code, message, dict(exc.headers) if exc.headers else None)


async def _unexpected_error(request: Request, exc: Exception) -> FastJSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    # Input no parser or database can take (deep nesting, NUL characters) is refused before any route.
    app.add_middleware(RequestGuard)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
