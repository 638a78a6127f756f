"""Every admin route refuses a user token (403) and a missing token (401), whatever the input."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from ..support import Api


def _admin_routes(base_url: str) -> list[tuple[str, str]]:
    paths = httpx.get(f"{base_url}/api/openapi.json").json()["paths"]
    routes = []
    for path, operations in paths.items():
        if path.startswith("/api/admin"):
            for method in operations:
                routes.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return routes


def test_every_admin_route_refuses_users_and_anonymous(make_user: Callable[..., Api], anon: Api) -> None:
    user = make_user()
    routes = _admin_routes(anon.base_url)
    assert len(routes) >= 40
    for method, path in routes:
        status, body = user.call(method, path, json={})
        assert (status, body) == (403, {"code": 403, "message": "需要管理员权限"}), (method, path)
        status, body = anon.call(method, path, json={})
        assert status == 401 and body["code"] == 401, (method, path)
