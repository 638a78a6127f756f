"""Automatic operation log for admin writes.

Every admin router uses `AuditedRoute`: after a POST/PUT/PATCH/DELETE by an admin, one
`operation_logs` row records who did what to which resource, from where, with the request
body kept after masking passwords, keys, tokens and anything shaped like a credential
(`sk-…` keys, bearer tokens, Google and AWS keys, JWTs: see `security/masking.py`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AppError
from ..security.masking import mask_text
from ..services import Services
from ..store.models import OperationLog, User
from .deps import client_ip

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MASK = "***"
MAX_STORED_BODY = 8192
_SECRET_NAME = re.compile(
    r"(password|secret|token|api_key|apikey|session_key|private_key|cookie|authorization|credentials?)$"
    # OAuth authorization codes (and pasted callback URLs carrying one); whole names only, so that
    # status_code and the like stay readable.
    r"|^(code|auth_code|authorization_code|callback_url|code_verifier)$",
    re.IGNORECASE,
)
_METHOD_ACTIONS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
# Trailing path words that name the action better than the HTTP method does.
_ACTION_WORDS = frozenset(
    {
        "toggle",
        "status",
        "recover",
        "reset",
        "cleanup",
        "trigger",
        "init-defaults",
        "reset-defaults",
        "batch-price-rate",
        "all-price-rate",
        "default",
        "test",
        "reload",
        "clear",
        "concurrency",
    }
)


def mask_secrets(value: Any) -> Any:
    """A copy of a decoded JSON value with every secret replaced by `***`."""
    if isinstance(value, dict):
        return {
            k: (
                MASK
                if isinstance(k, str) and _SECRET_NAME.search(k) and v not in (None, "")
                else mask_secrets(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _masked_body(raw: bytes) -> str:
    if not raw:
        return ""
    try:
        text = orjson.dumps(mask_secrets(orjson.loads(raw))).decode()
    except orjson.JSONDecodeError:
        text = f"<non-JSON body of {len(raw)} bytes>"
    return text[:MAX_STORED_BODY]


def describe(method: str, path: str, body_text: str) -> tuple[str, str, str, str]:
    """(action, resource, resource_id, description) from the route path and body."""
    parts = [p for p in path.split("/") if p][2:]  # drop "api", "admin"
    resource = parts[0] if parts else "admin"
    resource_id = next((p for p in parts[1:] if p.isdigit()), "")
    action = _METHOD_ACTIONS.get(method, method.lower())
    if parts and parts[-1] in _ACTION_WORDS and len(parts) > 1:
        action = parts[-1]
    description = f"{action} {resource}" + (f" #{resource_id}" if resource_id else "")
    try:
        decoded = orjson.loads(body_text) if body_text.startswith("{") else {}
    except orjson.JSONDecodeError:
        decoded = {}
    label = next((decoded[k] for k in ("username", "name", "model_id", "key") if decoded.get(k)), None)
    if label is not None:
        description += f": {label}"
    return action, resource, resource_id, description[:512]


def _admin(request: Request) -> tuple[int, str] | None:
    """(id, username) of the admin making the request; None when not one (refused before
    authentication: nothing was done by an admin)."""
    user: User | None = getattr(request.state, "user", None)
    if user is None or user.role != "admin":
        return None
    return user.id, user.username


async def _record(request: Request, body: bytes, status_code: int, admin: tuple[int, str] | None) -> None:
    if admin is None:
        return
    services: Services = request.app.state.services
    body_text = _masked_body(body)
    action, resource, resource_id, description = describe(request.method, request.url.path, body_text)
    # Every text is cut to its column: a refused write is recorded too, and its path may be long.
    entry = OperationLog(
        user_id=admin[0],
        username=admin[1],
        action=action[:32],
        resource=resource[:64],
        resource_id=resource_id[:64],
        description=description,
        method=request.method,
        path=request.url.path[:255],
        status_code=status_code,
        ip=client_ip(request)[:64],
        user_agent=request.headers.get("user-agent", "")[:512],
        request_body=body_text,
    )
    try:
        async with services.db.transaction() as session:
            session.add(entry)
    except Exception:  # the admin's change stands even if its audit row cannot be written
        log.exception("could not write operation log for %s %s", request.method, request.url.path)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, AppError):
        return exc.status_code
    if isinstance(exc, RequestValidationError):
        return 400
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    return 500


class AuditedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def audited(request: Request) -> Response:
            if request.method not in WRITE_METHODS:
                return await handler(request)
            body = await request.body()  # cached by Starlette, the handler reads it again
            try:
                response = await handler(request)
            except Exception as exc:  # refused writes are recorded too, then handled as usual
                admin = _admin(request)  # read before the rollback expires the user's row
                # What the refused request wrote is undone first: its open transaction would
                # otherwise hold SQLite's write lock while the audit row waits for it.
                session = getattr(request.state, "db_session", None)
                if session is not None:
                    await session.rollback()
                await _record(request, body, _status_of(exc), admin)
                raise
            await _record(request, body, response.status_code, _admin(request))
            return response

        return audited
