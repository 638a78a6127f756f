"""The one error hierarchy. `api/` maps it to the envelope, `gateway/` to each platform's shape."""

from __future__ import annotations


class AppError(Exception):
    status_code = 500
    default_message = "internal server error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(AppError):
    status_code = 400
    default_message = "bad request"


class Unauthorized(AppError):
    status_code = 401
    default_message = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    default_message = "forbidden"


class NotFound(AppError):
    status_code = 404
    default_message = "not found"


class TooManyRequests(AppError):
    status_code = 429
    default_message = "too many requests"


class BadGateway(AppError):
    status_code = 502
    default_message = "upstream error"


class ServiceUnavailable(AppError):
    status_code = 503
    default_message = "service unavailable"


ADMIN_REQUIRED = "需要管理员权限"
