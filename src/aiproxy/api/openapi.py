"""The OpenAPI document declares the statuses the API really answers, in the envelope's shape.

FastAPI documents a 422 for every route with parameters or a body; this API answers validation
errors with 400 (see `errors.py`). Routes behind a bearer token may answer 401, admin routes
403, and routes with ids in the path 404. Those are derived here from each route's dependencies
and path, so a new route is documented correctly without extra work; statuses particular to one
route (a 429 from a rate limit, a 404 for an id sent in the body) are declared on the route with
`error_responses(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from .deps import admin_user, current_user

ERROR_REF = "#/components/schemas/Error"
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "properties": {
        "code": {"type": "integer", "description": "the HTTP status again"},
        "message": {"type": "string"},
    },
    "required": ["code", "message"],
}
BEARER = "bearerAuth"
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route decorator: extra error statuses this route answers."""
    return {status: _error_response(status) for status in statuses}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    """The route's own dependant and every dependency below it (router-level ones included)."""
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _calls(route: APIRoute) -> set[Callable[..., Any]]:
    return {d.call for d in _dependants(route.dependant) if d.call is not None}


def route_statuses(route: APIRoute, method: str) -> set[int]:
    """The error statuses every route of this shape can answer."""
    statuses: set[int] = set()
    validated = any(d.path_params or d.query_params for d in _dependants(route.dependant))
    if validated or route.body_field is not None:
        statuses.add(400)  # validation
    if method in _WRITE_METHODS:
        statuses.add(400)  # a body nested too deeply is refused before any route (request_guard)
    calls = _calls(route)
    if current_user in calls:
        statuses.add(401)
    if admin_user in calls:
        statuses.add(403)
    if route.dependant.path_params:
        statuses.add(404)  # no row with that id
    return statuses


def _declare(app: FastAPI, schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    # Included routers are wrapped; their contexts carry the effective path of each route.
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.include_in_schema:
            continue
        for method in context.methods or ():
            operation = paths.get(context.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in sorted(route_statuses(route, method)):
                responses.setdefault(str(status), _error_response(status))
            if current_user in _calls(route):
                operation["security"] = [{BEARER: []}]
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` by FastAPI's document with the statuses declared as above."""
    generate = app.openapi
    declared: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI: post-process each new document once
        if not declared or declared[0] is not schema:
            _declare(app, schema)
            declared[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
