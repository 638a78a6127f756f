"""/api/openapi.json declares the statuses the API really answers: 400 (not FastAPI's 422) for
invalid input, 401 behind a token, 403 on admin routes, 404 for ids in the path, 201 on creation,
each error in the envelope's shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ..support import Api, RelayServer

ERROR_REF = "#/components/schemas/Error"
CREATING = [
    ("post", "/api/auth/register"),
    ("post", "/api/api-keys"),
    ("post", "/api/admin/users"),
    ("post", "/api/admin/users/{user_id}/api-keys"),
    ("post", "/api/admin/models"),
    ("post", "/api/admin/accounts"),
    ("post", "/api/admin/account-groups"),
    ("post", "/api/admin/proxy-configs"),
    ("post", "/api/admin/error-rules"),
    ("post", "/api/admin/error-messages"),
    ("post", "/api/admin/packages"),
    ("post", "/api/admin/user-packages/user/{user_id}"),
]


@pytest.fixture
def schema(relay: RelayServer) -> dict[str, Any]:
    return httpx.get(f"{relay.base_url}/api/openapi.json").json()  # type: ignore[no-any-return]


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def test_no_422_and_errors_in_the_envelope(schema: dict[str, Any]) -> None:
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "message"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        for status, response in responses.items():
            if status.startswith("4"):
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (
                    path,
                    status,
                )
        if operation.get("parameters") or operation.get("requestBody"):
            assert "400" in responses, (method, path)


def test_auth_statuses(schema: dict[str, Any]) -> None:
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        public = path.startswith("/api/auth/") or not path.startswith("/api/")
        if not public:
            assert "401" in responses and operation["security"] == [{"bearerAuth": []}], (method, path)
        if path.startswith("/api/admin/"):
            assert "403" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
    login = schema["paths"]["/api/auth/login"]["post"]["responses"]
    assert {"400", "401", "403", "429"} <= set(login)
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_creation_answers_201(schema: dict[str, Any]) -> None:
    for method, path in CREATING:
        responses = schema["paths"][path][method]["responses"]
        assert "201" in responses and "200" not in responses, path


def test_declared_statuses_are_the_real_ones(
    schema: dict[str, Any], admin: Api, anon: Api, make_user: Callable[..., Api]
) -> None:
    """A few real answers of each kind, checked against what their operation declares."""
    user = make_user()
    calls = [
        (anon, "get", "/api/admin/users", "/api/admin/users", {}),
        (user, "get", "/api/admin/users", "/api/admin/users", {}),
        (admin, "get", "/api/admin/users/{user_id}", "/api/admin/users/999999999", {}),
        (admin, "get", "/api/admin/users/{user_id}", "/api/admin/users/abc", {}),
        (admin, "post", "/api/admin/users", "/api/admin/users", {"json": {"username": "x"}}),
        (user, "post", "/api/api-keys", "/api/api-keys", {"json": {"name": "declared"}}),
    ]
    for client, method, template, url, kwargs in calls:
        status, _ = client.call(method.upper(), url, **kwargs)
        assert str(status) in schema["paths"][template][method]["responses"], (method, url, status)
