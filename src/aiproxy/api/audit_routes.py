"""What each admin write is called in the operation log: resource, action and a Chinese description.

`ROUTES` is the one table: for every write route under `/api/admin` (method and path template as
routed), the resource it acts on (singular, snake_case: `account`, `api_key`, …), the action and the
description's text. `describe()` fills in the rest from the request and its answer:

- `resource_id`: for a create answered 201, the new row's `data.id`; for a row naming an `id_from`
  value, that value; otherwise the last path parameter of the template (`/users/{user_id}/api-keys/
  {key_id}` → the key). Never a number taken from a refused create: nothing was made.
- `description`: the table's text. A text without placeholders gets the subject appended,
  `创建账户: test-account`, `更新用户: 5`, `更新用户: 5 (alice)`: the name (from the masked body, or
  from the answer's `name` / `username` / `display_name` / `model_id` / `package_name`; a create
  shows the name alone) and the id. A template's placeholders such as `{days}` are filled from the
  path, the query, the masked body and the answer's `data`, in that order; a value that is missing
  (a refused request has no answer) shows as `?`.
  A write refused with an error status ends with `（失败，HTTP 400）`.

Every value that reaches a description passes `mask_text` and is cut short, so a credential pasted
into a name never lands in the log. A route missing from the table (a new one) is still recorded,
with its first path segment as resource and the method as action.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from ..security.masking import mask_text

ADMIN_PREFIX = "/api/admin"
NAME_KEYS = ("name", "username", "display_name", "model_id", "package_name")
VALUE_MAX = 100  # characters of one value in a description
METHOD_ACTIONS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
METHOD_VERBS = {"POST": "提交", "PUT": "更新", "PATCH": "更新", "DELETE": "删除"}
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Audit:
    resource: str
    action: str
    text: str  # the description, or its template with {placeholders}
    # The value naming the resource when the path has none: a path/query/body/answer field, or
    # `outer.inner` for a field of an object in the answer.
    id_from: str = ""


@dataclass(frozen=True, slots=True)
class Described:
    action: str
    resource: str
    resource_id: str
    description: str


def _crud(
    path: str, resource: str, noun: str, *, toggle: bool = False, create: bool = True
) -> dict[str, Audit]:
    """The usual four routes of a collection `path` whose items are `path/{param}`."""
    collection, _, _ = path.rpartition("/")
    rows = {
        f"PUT {path}": Audit(resource, "update", f"更新{noun}"),
        f"DELETE {path}": Audit(resource, "delete", f"删除{noun}"),
    }
    if create:
        rows[f"POST {collection}"] = Audit(resource, "create", f"创建{noun}")
    if toggle:
        rows[f"PUT {path}/toggle"] = Audit(resource, "toggle", f"切换{noun}状态")
    return rows


# Keys are "METHOD /path/template" below /api/admin, exactly as the routers declare them.
ROUTES: dict[str, Audit] = {
    **_crud("/accounts/{account_id}", "account", "账户"),
    "PUT /accounts/{account_id}/status": Audit(
        "account", "status", "设置账户 {account_id} 的状态为 {status}"
    ),
    "POST /accounts/{account_id}/recover": Audit("account", "recover", "恢复账户"),
    "POST /accounts/{account_id}/refresh-token": Audit("account", "refresh-token", "刷新账户令牌"),
    "POST /accounts/{account_id}/health-check": Audit("account", "health-check", "检查账户健康状态"),
    "POST /accounts/{account_id}/cache/unavailable": Audit(
        "account", "mark-unavailable", "标记账户 {account_id} 暂时不可用 {duration} 秒"
    ),
    "DELETE /accounts/{account_id}/cache/unavailable": Audit(
        "account", "clear-unavailable", "解除账户不可用标记"
    ),
    "DELETE /accounts/{account_id}/cache/sessions": Audit("account", "clear-sessions", "清除账户的粘性会话"),
    "PUT /accounts/{account_id}/cache/concurrency": Audit(
        "account", "concurrency", "设置账户 {account_id} 的并发上限为 {limit}"
    ),
    "DELETE /accounts/{account_id}/cache/concurrency": Audit(
        "account", "reset-concurrency", "重置账户并发计数"
    ),
    **_crud("/account-groups/{group_id}", "account_group", "账户分组"),
    "POST /account-groups/{group_id}/accounts": Audit(
        "account_group", "add-account", "向账户分组 {group_id} 添加账户 {account_id}"
    ),
    "DELETE /account-groups/{group_id}/accounts/{account_id}": Audit(
        "account_group", "remove-account", "从账户分组 {group_id} 移除账户 {account_id}", id_from="group_id"
    ),
    **_crud("/api-keys/{key_id}", "api_key", "API Key", toggle=True, create=False),
    "POST /api-keys/lookup": Audit("api_key", "lookup", "按密钥查找 API Key", id_from="api_key.id"),
    "POST /cache/clear": Audit("cache", "clear", "清理缓存: {type}"),
    "PUT /cache/config": Audit("cache", "update", "更新缓存配置"),
    "DELETE /cache/sessions/{session_id}": Audit("session", "delete", "删除粘性会话"),
    "DELETE /cache/users/{user_id}": Audit("user", "clear-cache", "清理用户缓存"),
    "DELETE /cache/api-keys/{key_id}": Audit("api_key", "clear-cache", "清理 API Key 缓存"),
    **_crud("/client-filter/client-types/{type_id}", "client_type", "客户端类型", toggle=True),
    **_crud("/client-filter/rules/{rule_id}", "client_filter_rule", "客户端过滤规则", toggle=True),
    "PUT /client-filter/config": Audit("client_filter", "update", "更新客户端过滤配置"),
    "POST /client-filter/reload": Audit("client_filter", "reload", "重新加载客户端过滤规则"),
    "POST /client-filter/test": Audit("client_filter", "test", "测试客户端过滤"),
    "PUT /configs": Audit("config", "update", "更新配置 {key} 为 {value}", id_from="key"),
    "POST /configs/sync/trigger": Audit("config", "trigger", "触发配置同步"),
    **_crud("/error-rules/{rule_id}", "error_rule", "错误规则", toggle=True),
    "POST /error-rules/reset-defaults": Audit("error_rule", "reset-defaults", "重置为默认错误规则"),
    **_crud("/error-messages/{message_id}", "error_message", "自定义错误消息", toggle=True),
    "POST /health-check/trigger": Audit("health_check", "trigger", "触发健康检查巡检"),
    **_crud("/models/{model_pk}", "model", "模型", toggle=True),
    "POST /models/init-defaults": Audit("model", "init-defaults", "导入默认模型"),
    "POST /models/reset-defaults": Audit("model", "reset-defaults", "重置为默认模型"),
    "POST /oauth/generate-url": Audit("oauth", "generate-url", "生成 OAuth 授权链接"),
    "POST /oauth/exchange": Audit("oauth", "exchange", "用授权码换取 OAuth 凭据"),
    "POST /oauth/cookie-auth": Audit("oauth", "cookie-auth", "用 Cookie 换取 OAuth 凭据"),
    "DELETE /operation-logs/cleanup": Audit(
        "operation_log", "cleanup", "清理 {days} 天前的操作日志（删除 {deleted} 条）"
    ),
    **_crud("/packages/{package_id}", "package", "套餐"),
    **_crud("/proxy-configs/{proxy_id}", "proxy_config", "代理", toggle=True),
    "PUT /proxy-configs/{proxy_id}/default": Audit("proxy_config", "default", "设为默认代理"),
    "DELETE /proxy-configs/default": Audit("proxy_config", "clear-default", "清除默认代理"),
    "POST /proxy-configs/test": Audit("proxy_config", "test", "测试代理连通性: {host}:{port}"),
    "POST /proxy/test": Audit("account", "test", "测试账户转发", id_from="account_id"),
    **_crud("/user-packages/{user_package_id}", "user_package", "用户套餐", create=False),
    "POST /user-packages/user/{user_id}": Audit(
        "user_package", "create", "为用户 {user_id} 分配套餐: {package_name}"
    ),
    **_crud("/users/{user_id}", "user", "用户"),
    "POST /users/batch-price-rate": Audit(
        "user", "batch-price-rate", "批量设置用户价格倍率为 {price_rate}（{updated} 个用户）"
    ),
    "POST /users/all-price-rate": Audit("user", "all-price-rate", "设置全部用户价格倍率为 {price_rate}"),
    "POST /users/{user_id}/api-keys": Audit("api_key", "create", "为用户 {user_id} 创建 API Key: {name}"),
    "DELETE /users/{user_id}/api-keys/{key_id}": Audit("api_key", "delete", "删除 API Key"),
    "PUT /users/{user_id}/api-keys/{key_id}/toggle": Audit("api_key", "toggle", "切换 API Key 状态"),
    "DELETE /users/{user_id}/concurrency": Audit("user", "reset-concurrency", "重置用户并发计数"),
    "DELETE /system-logs/file": Audit("system_log", "delete", "删除日志文件", id_from="file"),
}


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return mask_text(str(value))[:VALUE_MAX]
    return None


class _Values(dict[str, str]):
    """Placeholder values; a missing one reads `?` (a refused request has no answer to read)."""

    def __missing__(self, key: str) -> str:
        return "?"


def _values(*sources: dict[str, Any]) -> _Values:
    """Scalar values by name, the first source that has a name winning."""
    out = _Values()
    for source in sources:
        for key, value in source.items():
            shown = _scalar(value)
            if shown is not None and key not in out:
                out[key] = shown
    return out


def _name(body: dict[str, Any], data: dict[str, Any]) -> str:
    for source in (body, data):
        for key in NAME_KEYS:
            shown = _scalar(source.get(key))
            if shown:
                return shown
    return ""


def _fallback(method: str, path: str) -> Audit:
    """A route the table does not know yet: named after its first path segment."""
    parts = [p for p in path.split("/") if p]
    head = parts[0] if parts else "admin"
    resource = head.replace("-", "_")
    if resource.endswith("s") and not resource.endswith("ss"):
        resource = resource[:-1]
    return Audit(
        resource, METHOD_ACTIONS.get(method, method.lower()), f"{METHOD_VERBS.get(method, method)} {head}"
    )


def describe(
    method: str,
    template: str,
    path_params: dict[str, str],
    query: dict[str, str],
    body: Any,
    status_code: int,
    data: Any,
) -> Described:
    """The operation-log fields of one admin write.

    `template` is the route's path as declared (`/api/admin/users/{user_id}`), `body` the masked,
    decoded request body, `data` the answer's `data` (None when refused or not JSON).
    """
    relative = template.removeprefix(ADMIN_PREFIX)
    audit = ROUTES.get(f"{method} {relative}") or _fallback(method, relative)
    body_fields = body if isinstance(body, dict) else {}
    answer = data if isinstance(data, dict) and status_code < 400 else {}
    values = _values(path_params, query, body_fields, answer)

    if "." in audit.id_from:  # a field of an object in the answer
        outer, _, inner = audit.id_from.partition(".")
        nested = answer.get(outer)
        resource_id = (_scalar(nested.get(inner)) if isinstance(nested, dict) else None) or ""
    elif audit.id_from:
        resource_id = values.get(audit.id_from, "")
    elif audit.action == "create":
        resource_id = str(answer["id"]) if status_code == 201 and "id" in answer else ""
    else:
        params = _PARAM.findall(relative)
        resource_id = path_params.get(params[-1], "") if params else ""

    name = _name(body_fields, answer)
    if "{" in audit.text:  # a template says everything it wants said
        description = string.Formatter().vformat(audit.text, (), values)
    else:
        description = audit.text
        if audit.action == "create" and name:
            subject = name
        elif resource_id and name and name != resource_id:
            subject = f"{resource_id} ({name})"
        else:
            subject = resource_id or name
        if subject:
            description += f": {subject}"
    if status_code >= 400:
        description += f"（失败，HTTP {status_code}）"
    return Described(audit.action, audit.resource, resource_id, description)
