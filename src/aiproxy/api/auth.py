"""Public console auth: captcha, login, register."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from .. import state_keys
from ..errors import BadRequest, Forbidden, TooManyRequests, Unauthorized
from ..security import captcha
from ..security.passwords import verify_password
from ..security.tokens import issue_token
from ..services import Services
from ..store import users as user_store
from ..store.models import utcnow
from .deps import ServicesDep, SessionDep, client_ip
from .envelope import FastJSONResponse, created, ok
from .errors import describe_validation_error
from .openapi import error_responses
from .schemas import LoginBody, RegisterBody
from .views import user_view

log = logging.getLogger(__name__)  # the `auth` log file

router = APIRouter(prefix="/api/auth", tags=["auth"])
BodyT = TypeVar("BodyT", LoginBody, RegisterBody)


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for routes that parse their body by hand (after a rate-limit check)."""
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}}}}


@router.get("/captcha/status")
async def captcha_status(services: ServicesDep) -> FastJSONResponse:
    configs = services.configs
    return ok(
        {
            "captcha_enabled": configs.get("captcha_enabled"),
            "login_rate_limit_enabled": configs.get("login_rate_limit_enabled"),
            # The console's login page offers registration only when it is open.
            "allow_register": configs.get("allow_register"),
        }
    )


@router.get("/captcha", responses=error_responses(429))
async def new_captcha(request: Request, services: ServicesDep) -> FastJSONResponse:
    configs = services.configs
    if not configs.get("captcha_enabled"):
        return ok({"captcha_id": "", "image": "", "enabled": False})
    limit = configs.get("captcha_rate_limit")
    decision = await services.state.hit(state_keys.captcha_requests(client_ip(request)), limit, 60)
    if not decision.allowed:
        raise TooManyRequests(
            "验证码请求过于频繁，请稍后再试", headers={"Retry-After": str(max(1, int(decision.retry_after)))}
        )
    captcha_id, answer, image = captcha.new_challenge()
    await services.state.set(state_keys.captcha_answer(captcha_id), answer, ttl=configs.get("captcha_ttl"))
    return ok({"captcha_id": captcha_id, "image": image, "enabled": True})


async def _check_captcha(services: Services, captcha_id: str, given: str) -> None:
    if not services.configs.get("captcha_enabled"):
        return
    if not captcha_id or not given:
        raise BadRequest("captcha is required")
    # pop: a captcha is consumed by the first attempt, right or wrong.
    expected = await services.state.pop(state_keys.captcha_answer(captcha_id))
    if expected is None:
        raise BadRequest("captcha expired or invalid")
    if not captcha.answers_match(expected, given):
        raise BadRequest("incorrect captcha")


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None


def _parse(model: type[BodyT], payload: Any) -> BodyT:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc.errors()[0])) from None


@router.post("/login", openapi_extra=_documented_body(LoginBody), responses=error_responses(401, 403, 429))
async def login(request: Request, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    configs = services.configs
    ip = client_ip(request)
    limited = configs.get("login_rate_limit_enabled")
    # Counted before the body is read, so a flood of garbage bodies is limited too.
    if limited:
        decision = await services.state.hit(
            state_keys.login_attempts(ip),
            configs.get("login_rate_limit_max"),
            configs.get("login_rate_limit_window"),
        )
        if not decision.allowed:
            log.warning("login refused: too many attempts from %s", ip)
            raise TooManyRequests(
                "登录尝试次数过多，请稍后再试",
                headers={"Retry-After": str(max(1, int(decision.retry_after) + 1))},
            )
    body = _parse(LoginBody, await _json_body(request))
    await _check_captcha(services, body.captcha_id, body.captcha)
    user = await user_store.find_user_by_name(session, body.username)
    if user is None or not verify_password(body.password, user.password_hash):
        log.warning("login failed for %r from %s: wrong user name or password", body.username[:64], ip)
        raise Unauthorized("invalid username or password")
    if user.status != "active":
        log.warning("login refused for %s (user %s) from %s: user is disabled", user.username, user.id, ip)
        raise Forbidden("user is disabled")
    user.last_login_at = utcnow()
    await session.commit()
    if limited:
        await services.state.delete(state_keys.login_attempts(ip))
    token = issue_token(
        services.jwt_secret,
        user_id=user.id,
        username=user.username,
        role=user.role,
        version=user.token_version,
    )
    log.info("login: %s (user %s, %s) from %s", user.username, user.id, user.role, ip)
    return ok({"token": token, "user": user_view(user)})


@router.post(
    "/register",
    openapi_extra=_documented_body(RegisterBody),
    status_code=201,
    responses=error_responses(403),
)
async def register(request: Request, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    configs = services.configs
    if not configs.get("allow_register"):
        raise Forbidden("registration is disabled")
    body = _parse(RegisterBody, await _json_body(request))
    await _check_captcha(services, body.captcha_id, body.captcha)
    user = await user_store.create_user(
        session,
        username=body.username,
        password=body.password,
        email=body.email or "",
        max_concurrency=configs.get("default_max_concurrency"),
    )
    await session.commit()
    log.info("registered: %s (user %s) from %s", user.username, user.id, client_ip(request))
    return created(user_view(user))
