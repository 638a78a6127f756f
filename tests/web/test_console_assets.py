"""How the relay serves the console: index.html for browser navigations, hashed assets cached for a
year and compressed, JSON errors kept for API clients, nothing outside the static directory."""

from __future__ import annotations

import re
from typing import Any

import httpx

HTML = {"accept": "text/html,application/xhtml+xml"}


def _asset_paths(index: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/assets/[^"]+)"', index)


def test_index_for_the_root_and_for_console_pages(console_relay: Any) -> None:
    base = console_relay.base_url
    root = httpx.get(base + "/")
    assert root.status_code == 200 and root.headers["content-type"].startswith("text/html")
    assert root.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in root.headers["content-security-policy"]
    assert root.headers["x-frame-options"] == "DENY"
    page = httpx.get(base + "/admin/users", headers=HTML)
    assert page.status_code == 200 and page.text == root.text
    assert '<div id="app">' in root.text


def test_api_clients_keep_their_json_errors(console_relay: Any) -> None:
    base = console_relay.base_url
    for path in ("/admin/users", "/no/such/path"):
        answer = httpx.get(base + path, headers={"accept": "application/json"})
        assert answer.status_code == 404 and answer.json()["code"] == 404
    # An API path stays the API's even when a browser asks for it.
    api = httpx.get(base + "/api/no-such-route", headers=HTML)
    assert api.status_code == 404 and api.json()["code"] == 404
    # So do proxy paths: a browser opening one gets the gateway's answer, not the console.
    proxied = httpx.get(base + "/claude/v1/models", headers=HTML)
    assert "text/html" not in proxied.headers.get("content-type", "")
    # POSTs never reach the console.
    assert httpx.post(base + "/admin/users", headers=HTML).status_code == 404


def test_assets_are_cached_compressed_and_confined(console_relay: Any) -> None:
    base = console_relay.base_url
    paths = _asset_paths(httpx.get(base + "/").text)
    scripts = [p for p in paths if p.endswith(".js")]
    assert scripts, paths
    plain = httpx.get(base + scripts[0], headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert plain.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "content-encoding" not in plain.headers
    packed = httpx.get(base + scripts[0], headers={"accept-encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and packed.content == plain.content
    assert int(packed.headers["content-length"]) < len(plain.content)
    head = httpx.head(base + scripts[0])
    assert head.status_code == 200 and head.content == b""
    assert httpx.get(base + "/assets/no-such-file.js").status_code == 404
    # Encoded dots are decoded by the server before routing: still confined to the directory.
    for sneaky in ("/assets/../console.py", "/assets/%2e%2e/console.py", "/assets/..%2f..%2fapp.py"):
        answer = httpx.get(base + sneaky)
        assert answer.status_code == 404 or answer.text.startswith("<!doctype html>"), sneaky
        assert "import" not in answer.text
