"""The gateway's own refusals, rendered in the error shape each client SDK expects."""

from __future__ import annotations

import orjson

# Families: the wire protocol a client speaks on a route.
CLAUDE = "claude"
OPENAI = "openai"
GEMINI = "gemini"
RESPONSES = "responses"

# Anthropic's error type per HTTP status (529 is Anthropic's own "overloaded").
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_exceeded",
    502: "upstream_error",
    503: "service_unavailable",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}
# The Responses route's own error codes (its reference table), inside OpenAI's error object.
_RESPONSES_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "no_available_account",
}


class GatewayError(Exception):
    """A refusal before or instead of an upstream answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.detail = detail  # for the request log only (which client rule refused, say)


def error_body(family: str, status: int, message: str, code: str | None = None) -> bytes:
    if family == CLAUDE:
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    if family == GEMINI:
        return orjson.dumps(
            {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}
        )
    kind = _OPENAI_TYPES.get(status, "api_error")
    if family == RESPONSES:
        code = code or _RESPONSES_CODES.get(status, "api_error")
        return orjson.dumps({"error": {"message": message, "type": kind, "code": code, "param": None}})
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code or kind}})


def stream_cut_notice(family: str) -> bytes:
    """Tell the client its stream is incomplete, the way its own vendor reports a mid-stream error."""
    message = "upstream stream ended before the response was complete"
    if family == CLAUDE:
        payload = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + payload + b"\n\n"
    if family == RESPONSES:
        payload = orjson.dumps(
            {"type": "error", "code": "stream_incomplete", "message": message, "param": None}
        )
        return b"event: error\ndata: " + payload + b"\n\n"
    if family == OPENAI:
        return b"data: " + orjson.dumps({"error": {"message": message, "type": "api_error"}}) + b"\n\n"
    return b""  # Gemini streams have no error event: the stream just ends without a finishReason


# Messages a user sees; the Chinese ones are the texts users of this kind of relay know.
MISSING_KEY = "缺少 API Key，请在 Authorization 或 x-api-key header 中提供"
INVALID_KEY = "无效的 API Key"
KEY_DISABLED = "API Key 已被禁用"
KEY_EXPIRED = "API Key 已过期"
USER_DISABLED = "用户已被禁用"
PLATFORM_FORBIDDEN = "无权访问此平台"
MODEL_FORBIDDEN = "无权使用此模型"
MODEL_DISABLED = "模型已禁用"
MODEL_UNKNOWN = "未知模型"
RATE_LIMITED = "请求过于频繁，请稍后再试"
DAILY_LIMIT = "已达到每日请求上限"
MONTHLY_QUOTA = "已达到本月费用配额"
USER_CONCURRENCY = "并发请求数超过限制"
# Packages (the user's allowance): the one consumed, or the reason none could be.
NO_PACKAGE = "没有可用的套餐，请先购买或联系管理员分配套餐"
PACKAGE_EXHAUSTED = "套餐额度已用完"
PACKAGE_EXPIRED = "套餐已过期"
PACKAGE_DISABLED = "套餐已停用"
PACKAGE_NOT_STARTED = "套餐尚未生效"
PACKAGE_PLATFORM_FORBIDDEN = "套餐无权访问此平台"
PACKAGE_MODEL_FORBIDDEN = "套餐无权使用此模型"
PACKAGE_RATE_LIMITED = "套餐请求过于频繁，请稍后再试"
PACKAGE_DAILY_LIMIT = "已达到套餐每日请求上限"
CLIENT_FORBIDDEN = "当前客户端不允许访问"
KEY_CLIENT_FORBIDDEN = "此 API Key 不允许当前客户端访问"
PACKAGE_CLIENT_FORBIDDEN = "套餐不允许当前客户端访问"
NO_ACCOUNT = "没有可用的账户"
UPSTREAM_FAILED = "上游服务请求失败"
# Shared state (Redis) is down and this request has a limit that can only be checked there.
STATE_UNAVAILABLE = "共享状态不可用，无法校验限额，请稍后重试"
