"""Automatic operation log for admin writes.

Every admin router uses `AuditedRoute`: after a POST/PUT/PATCH/DELETE by an admin, one
`operation_logs` row records who did what to which resource, from where, with the request
body kept after masking passwords, keys, tokens and anything shaped like a credential
(`sk-…` keys, bearer tokens, Google and AWS keys, JWTs: see `security/masking.py`).
The resource, its id, the action and the Chinese description come from the route table in
`audit_routes.py`, keyed by the route's declared path.
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
from .audit_routes import describe
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
# Answers larger than this are not read for the new row's id and name (creates answer a few hundred bytes).
MAX_READ_ANSWER = 65536


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


def _masked_body(raw: bytes) -> tuple[str, Any]:
    """The body as stored (masked JSON text, cut to MAX_STORED_BODY) and the masked value itself
    (the audit table reads names and values from it; None when the body is not JSON)."""
    if not raw:
        return "", None
    try:
        masked = mask_secrets(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return f"<non-JSON body of {len(raw)} bytes>", None
    return orjson.dumps(masked).decode()[:MAX_STORED_BODY], masked


def _answer_data(response: Response | None) -> Any:
    """`data` of a JSON answer in the envelope, or None."""
    raw = getattr(response, "body", b"") if response is not None else b""
    if not raw or len(raw) > MAX_READ_ANSWER:
        return None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return payload.get("data") if isinstance(payload, dict) else None


def _admin(request: Request) -> tuple[int, str] | None:
    """(id, username) of the admin making the request; None when not one (refused before
    authentication: nothing was done by an admin)."""
    user: User | None = getattr(request.state, "user", None)
    if user is None or user.role != "admin":
        return None
    return user.id, user.username


async def _record(
    request: Request,
    template: str,
    body: bytes,
    status_code: int,
    admin: tuple[int, str] | None,
    response: Response | None = None,
) -> None:
    if admin is None:
        return
    services: Services = request.app.state.services
    body_text, masked = _masked_body(body)
    what = describe(
        request.method,
        template,
        dict(request.path_params),
        dict(request.query_params),
        masked,
        status_code,
        _answer_data(response),
    )
    # Every text is cut to its column: a refused write is recorded too, and its path may be long.
    entry = OperationLog(
        user_id=admin[0],
        username=admin[1],
        action=what.action[:32],
        resource=what.resource[:64],
        resource_id=what.resource_id[:64],
        description=what.description[:512],
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
        template = self.path  # as declared, `{user_id}` and all: the audit table's key

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
                await _record(request, template, body, _status_of(exc), admin)
                raise
            await _record(request, template, body, response.status_code, _admin(request), response)
            return response

        return audited
