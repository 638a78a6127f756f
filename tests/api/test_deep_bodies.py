"""Deeply nested JSON bodies are a 400 in the envelope on every /api route, never a 500, and error
texts never echo much of what was sent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from aiproxy.api.request_guard import MAX_JSON_DEPTH

from ..support import Api

TOO_DEEP = {"code": 400, "message": "request body is nested too deeply"}
JSON = {"content-type": "application/json"}


def _nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# Depths that broke different layers: the JSON parser (1000) and, on admin writes, the audit
# log's masking and encoding of the body (300); and one level past the limit.
DEEP_BODIES = {
    "username-list-1000": '{"username": ' + _nested_list(1000) + ', "password": "x"}',
    "top-level-list-1000": _nested_list(1000),
    "top-level-object-1000": _nested_object(1000),
    "extra-field-object-300": '{"username": "bob", "password": "secret-pass", "x": '
    + _nested_object(300)
    + "}",
    "one-past-the-limit": '{"username": "bob", "x": ' + _nested_list(MAX_JSON_DEPTH) + "}",
}


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/register"])
def test_public_auth_routes(anon: Api, path: str, body: str) -> None:
    assert anon.post(path, content=body.encode(), headers=JSON) == (400, TOO_DEEP)


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
def test_authenticated_routes(admin: Api, make_user: Callable[..., Api], body: str) -> None:
    user = make_user()
    for client, method, path in (
        (admin, "POST", "/api/admin/users"),  # an audited admin write
        (admin, "PUT", "/api/admin/configs"),
        (admin, "POST", "/api/admin/accounts"),
        (user, "PUT", "/api/profile"),
        (user, "POST", "/api/api-keys"),
    ):
        assert client.call(method, path, content=body.encode(), headers=JSON) == (400, TOO_DEEP), path


def test_content_type_does_not_matter(anon: Api) -> None:
    """Login parses any body as JSON, whatever its content type says."""
    body = _nested_list(5000).encode()
    assert anon.post("/api/auth/login", content=body, headers={"content-type": "text/plain"}) == (
        400,
        TOO_DEEP,
    )
    assert anon.post("/api/auth/login", content=body) == (400, TOO_DEEP)


def test_ordinary_nesting_and_brackets_in_strings_pass(admin: Api) -> None:
    """Nesting up to the limit is fine; brackets inside strings (escaped quotes too) are text."""
    tag = uuid.uuid4().hex[:8]
    description = '\\"' + "[{" * 100
    extra = _nested_object(MAX_JSON_DEPTH - 1)  # inside the body's own object: exactly the limit
    body = f'{{"name": "deep-{tag}", "description": "{description}", "extra": {extra}}}'
    status, created = admin.post("/api/admin/account-groups", content=body.encode(), headers=JSON)
    assert status == 201, created
    assert created["data"]["description"] == json.loads(f'"{description}"')


def test_validation_errors_do_not_echo_the_input(admin: Api) -> None:
    long_key = "k" * 5000
    for body in (
        {"name": "x", "type": "openai", "model_mapping": {long_key: 5}},  # the key is in the error's location
        {"clear_credentials": [long_key]},  # the value is in the validator's message
    ):
        method, path = ("POST", "/api/admin/accounts") if "name" in body else ("PUT", "/api/admin/accounts/1")
        status, answer = admin.call(method, path, json=body)
        assert status == 400, answer
        assert len(answer["message"]) <= 300, answer["message"][:100]
