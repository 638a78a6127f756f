"""Input the database cannot hold is refused with a 400 naming the field, on every route: ids
beyond 64 bits, pages beyond any OFFSET, counts beyond PostgreSQL's 32-bit INTEGER, `true` posing
as a price, infinite amounts, NUL characters in strings."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ..support import Api

TOO_BIG_ID = 2**63  # one past BIGINT
TOO_BIG_INT32 = 2**31  # one past INTEGER


def _operations(base_url: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    paths = httpx.get(f"{base_url}/api/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _is_integer(schema: dict[str, Any]) -> bool:
    """An integer, or an optional one (`anyOf: [integer, null]`)."""
    return schema.get("type") == "integer" or any(_is_integer(s) for s in schema.get("anyOf", []))


def _int_params(operation: dict[str, Any], where: str) -> list[str]:
    return [
        p["name"] for p in operation.get("parameters", []) if p["in"] == where and _is_integer(p["schema"])
    ]


def _refused(api: Api, method: str, path: str, field: str, **kwargs: Any) -> None:
    status, body = api.call(method, path, **kwargs)
    assert status == 400, (method, path, status, body)
    assert body["code"] == 400 and body["message"].startswith(f"{field}:"), (method, path, body)


def test_every_path_id_beyond_64_bits(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    checked = 0
    for method, path, operation in _operations(admin.base_url):
        params = _int_params(operation, "path")
        client = admin if path.startswith("/api/admin") else user
        for name in params:
            # The other ids of the path are valid numbers: only this one is out of range.
            url = re.sub(r"\{(\w+)\}", lambda m, n=name: str(TOO_BIG_ID) if m[1] == n else "1", path)
            _refused(client, method, url, name, json={})
            checked += 1
    assert checked >= 50  # every route with an id in its path


def test_every_query_id_and_page_beyond_range(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    checked = 0
    for method, path, operation in _operations(admin.base_url):
        client = admin if path.startswith("/api/admin") else user
        url = re.sub(r"\{\w+\}", "1", path)
        # Other required query parameters get a harmless value, so the one under test is what fails.
        required = {
            p["name"]: "x"
            for p in operation.get("parameters", [])
            if p["in"] == "query" and p.get("required") and not _is_integer(p["schema"])
        }
        for name in _int_params(operation, "query"):
            if name.endswith("_id") or name == "page":
                _refused(client, method, url, name, params={**required, name: TOO_BIG_ID})
                checked += 1
    assert checked >= 15  # user/api-key/account/group filters and the page of every list
    status, body = admin.get("/api/admin/users", params={"page": 0})
    assert status == 400 and body["message"].startswith("page:")
    status, body = admin.get("/api/admin/users", params={"page_size": TOO_BIG_ID})
    assert status == 200 and body["data"]["page_size"] == 100  # a large page is served as 100


def _model(**fields: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {"model_id": f"m-{tag}", "model_name": "m", "platform": "openai", "input_price": 1, **fields}


BODY_CASES: list[tuple[str, str, Callable[[], dict[str, Any]], str]] = [
    # ids beyond 64 bits in bodies
    ("POST", "/api/admin/users", lambda: _new_user(account_group_id=TOO_BIG_ID), "account_group_id"),
    (
        "POST",
        "/api/admin/users/batch-price-rate",
        lambda: {"user_ids": [TOO_BIG_ID], "price_rate": 1},
        "user_ids.0",
    ),
    ("POST", "/api/admin/accounts", lambda: _account(group_ids=[TOO_BIG_ID]), "group_ids.0"),
    ("POST", "/api/admin/accounts", lambda: _account(proxy_config_id=TOO_BIG_ID), "proxy_config_id"),
    ("POST", "/api/admin/account-groups/{group}/accounts", lambda: {"account_id": TOO_BIG_ID}, "account_id"),
    ("POST", "/api/admin/proxy/test", lambda: {"account_id": TOO_BIG_ID}, "account_id"),
    ("POST", "/api/admin/proxy-configs/test", lambda: {"id": TOO_BIG_ID}, "id"),
    ("PUT", "/api/admin/api-keys/{key}", lambda: {"account_group_id": TOO_BIG_ID}, "account_group_id"),
    # counts beyond PostgreSQL INTEGER
    (
        "POST",
        "/api/admin/models",
        lambda: _model(output_price=1, max_input_tokens=TOO_BIG_INT32),
        "max_input_tokens",
    ),
    ("POST", "/api/admin/models", lambda: _model(output_price=1, sort_order=TOO_BIG_INT32), "sort_order"),
    (
        "POST",
        "/api/admin/models",
        lambda: _model(output_price=1, sort_order=-TOO_BIG_INT32 - 1),
        "sort_order",
    ),
    ("PUT", "/api/admin/models/1", lambda: {"max_output_tokens": TOO_BIG_INT32}, "max_output_tokens"),
    # booleans are not numbers
    ("POST", "/api/admin/models", lambda: _model(output_price=True), "output_price"),
    ("PUT", "/api/admin/models/1", lambda: {"input_price": True}, "input_price"),
    ("POST", "/api/admin/users", lambda: _new_user(price_rate=True), "price_rate"),
    ("POST", "/api/admin/users/all-price-rate", lambda: {"price_rate": True}, "price_rate"),
    ("PUT", "/api/admin/api-keys/{key}", lambda: {"monthly_quota": True}, "monthly_quota"),
    ("PUT", "/api/admin/api-keys/{key}", lambda: {"rate_limit": True}, "rate_limit"),
    ("POST", "/api/admin/accounts", lambda: _account(priority=True), "priority"),
    (
        "POST",
        "/api/admin/error-rules",
        lambda: {"target_status": "invalid", "status_code": True},
        "status_code",
    ),
    (
        "POST",
        "/api/admin/proxy-configs/test",
        lambda: {"host": "127.0.0.1", "port": 1, "timeout": True},
        "timeout",
    ),
    # amounts must be finite (JSON 1e400 reads as infinity)
    ("POST", "/api/admin/users", lambda: _new_user(balance=float("inf")), "balance"),
]


def _new_user(**fields: Any) -> dict[str, Any]:
    return {"username": f"b{uuid.uuid4().hex[:10]}", "password": "secret-pass", **fields}


def _account(**fields: Any) -> dict[str, Any]:
    return {"name": f"b-{uuid.uuid4().hex[:8]}", "type": "openai", "api_key": "sk-x", **fields}


def _raw_json(body: dict[str, Any]) -> bytes:
    """JSON as a client would send it: infinity written as a number too large for a double."""
    return json.dumps(body).replace("Infinity", "1e400").encode()


@pytest.mark.parametrize(
    ("method", "path", "body", "field"), BODY_CASES, ids=[f"{m} {p} {f}" for m, p, _, f in BODY_CASES]
)
def test_body_numbers(
    admin: Api,
    make_user: Callable[..., Api],
    method: str,
    path: str,
    body: Callable[[], dict[str, Any]],
    field: str,
) -> None:
    if "{key}" in path:
        key = make_user().ok("POST", "/api/api-keys", json={"name": "k"})
        path = path.replace("{key}", str(key["id"]))
    if "{group}" in path:
        group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"b-{uuid.uuid4().hex[:8]}"})
        path = path.replace("{group}", str(group["id"]))
    content = _raw_json(body())
    _refused(admin, method, path, field, content=content, headers={"content-type": "application/json"})


def test_user_numbers(make_user: Callable[..., Api]) -> None:
    """The same rules on a user's own routes."""
    user = make_user()
    _refused(user, "POST", "/api/api-keys", "monthly_quota", json={"name": "k", "monthly_quota": True})
    _refused(user, "POST", "/api/api-keys", "daily_limit", json={"name": "k", "daily_limit": TOO_BIG_INT32})
    _refused(user, "GET", "/api/usage/records", "api_key_id", params={"api_key_id": TOO_BIG_ID})


def test_valid_edges_are_accepted(admin: Api) -> None:
    """The bounds are the columns' own: their extreme values still work on both databases."""
    model = admin.ok(
        "POST",
        "/api/admin/models",
        json=_model(output_price=2.5, max_input_tokens=TOO_BIG_INT32 - 1, sort_order=-TOO_BIG_INT32),
    )
    assert (model["max_input_tokens"], model["sort_order"]) == (TOO_BIG_INT32 - 1, -TOO_BIG_INT32)
    status, body = admin.get(f"/api/admin/users/{TOO_BIG_ID - 1}")
    assert (status, body["message"]) == (404, "user not found")
    assert admin.ok("GET", "/api/admin/users", params={"page": TOO_BIG_INT32 - 1})["items"] == []


def test_nul_characters(admin: Api, anon: Api) -> None:
    """PostgreSQL text cannot hold U+0000: refused wherever a string comes in (SQLite alike)."""
    nul = "a\\u0000b"  # the JSON escape, as text
    _refused(admin, "GET", "/api/admin/users", "keyword", params={"keyword": "a\x00b"})
    _refused(admin, "GET", "/api/admin/logs/summary", "platform", params={"platform": "\x00"})
    for method, path, body, field in (
        ("POST", "/api/admin/account-groups", f'{{"name": "{nul}"}}', "name"),
        (
            "POST",
            "/api/admin/accounts",
            f'{{"name": "x", "type": "openai", "model_mapping": {{"{nul}": "m"}}}}',
            "model_mapping.ab",
        ),
        ("POST", "/api/admin/users/batch-price-rate", f'{{"user_ids": [1], "x": ["{nul}"]}}', "x.0"),
    ):
        _refused(
            admin, method, path, field, content=body.encode(), headers={"content-type": "application/json"}
        )
    login = f'{{"username": "{nul}", "password": "x"}}'.encode()
    _refused(
        anon,
        "POST",
        "/api/auth/login",
        "username",
        content=login,
        headers={"content-type": "application/json"},
    )
    # An escaped backslash followed by "u0000" is text, not a NUL.
    tag = uuid.uuid4().hex[:8]
    group = admin.ok(
        "POST", "/api/admin/account-groups", json={"name": f"nul-{tag}", "description": "\\u0000"}
    )
    assert group["description"] == "\\u0000"


def test_strings_longer_than_their_columns(admin: Api, anon: Api, make_user: Callable[..., Api]) -> None:
    """PostgreSQL refuses a string longer than its VARCHAR column: the schema bounds it first."""
    user = make_user()
    email = "a" * 250 + "@b.com"
    _refused(admin, "POST", "/api/admin/users", "email", json=_new_user(email=email))
    _refused(user, "PUT", "/api/profile", "email", json={"email": email})
    _refused(anon, "POST", "/api/auth/register", "email", json=_new_user(email=email))
    platforms = ",".join(f"platform{i}" for i in range(40))  # distinct items: no de-duplication
    _refused(
        user, "POST", "/api/api-keys", "allowed_platforms", json={"name": "k", "allowed_platforms": platforms}
    )
    _refused(
        user, "POST", "/api/api-keys", "allowed_clients", json={"name": "k", "allowed_clients": platforms}
    )


def test_dates_and_config_values_beyond_range(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    # In UTC this instant is in year 10000.
    body = {"name": "k", "expires_at": "9999-12-31T23:59:59-23:59"}
    _refused(user, "POST", "/api/api-keys", "expires_at", json=body)
    for day in ("9999-12-31", "0001-01-01"):
        _refused(user, "GET", "/api/usage/daily", "end_date", params={"end_date": day})
        _refused(admin, "GET", "/api/admin/operation-logs", "end_date", params={"end_date": day})
    # The answer echoes the value: a number JSON cannot carry back is refused before it is stored.
    for raw in (
        b'{"key": "session_ttl", "value": 18446744073709551616}',
        b'{"key": "session_ttl", "value": 1e400}',
    ):
        _refused(
            admin,
            "PUT",
            "/api/admin/configs",
            "value",
            content=raw,
            headers={"content-type": "application/json"},
        )
    assert admin.ok("GET", "/api/admin/configs/category/proxy")["session_ttl"] == 30


def test_cleanup_with_a_retention_beyond_the_calendar(admin: Api) -> None:
    key = "operation_log_retention_days"
    before = admin.ok("GET", "/api/admin/configs/category/log")[key]
    # The largest value a config takes (see runtime_configs.NUMBER_CEILING) still reaches past year 1.
    admin.ok("PUT", "/api/admin/configs", json={"key": key, "value": 10**8})
    try:
        assert admin.ok("DELETE", "/api/admin/operation-logs/cleanup") == {"deleted": 0, "days": 10**8}
    finally:
        admin.ok("PUT", "/api/admin/configs", json={"key": key, "value": before})


def test_audit_of_a_long_path_id(admin: Api) -> None:
    """A path id with many leading zeros is still a valid id; its audit row must still be written."""
    admin_id = admin.ok("GET", "/api/profile")["id"]
    padded = str(admin_id).rjust(70, "0")
    admin.ok("PUT", f"/api/admin/users/{padded}", json={})
    logs = admin.ok("GET", "/api/admin/operation-logs", params={"resource": "user", "page_size": 100})[
        "items"
    ]
    entry = next(e for e in logs if e["path"].endswith(padded))
    assert entry["resource_id"] == padded[:64]
