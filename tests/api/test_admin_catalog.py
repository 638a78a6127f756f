"""Admin: global API key views, the model table, and the models users see."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ..support import Api


def test_global_key_list_and_lookup(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    uid = user.user["id"]  # type: ignore[attr-defined]
    tag = uuid.uuid4().hex[:6]
    key = user.ok("POST", "/api/api-keys", json={"name": f"find-{tag}"})
    user.ok("POST", "/api/api-keys", json={"name": f"other-{tag}"})

    data = admin.ok("GET", f"/api/admin/api-keys?keyword=find-{tag}")
    assert data["total"] == 1 and data["items"][0]["id"] == key["id"]
    assert data["items"][0]["username"] == user.user["username"]  # type: ignore[attr-defined]
    assert "key" not in data["items"][0]
    assert admin.ok("GET", f"/api/admin/api-keys?user_id={uid}")["total"] == 2
    user.ok("PUT", f"/api/api-keys/{key['id']}/toggle")
    assert admin.ok("GET", f"/api/admin/api-keys?user_id={uid}&status=disabled")["total"] == 1

    found = admin.ok("POST", "/api/admin/api-keys/lookup", json={"key": key["key"]})
    assert found["api_key"]["id"] == key["id"] and found["user"]["id"] == uid
    status, body = admin.post("/api/admin/api-keys/lookup", json={"key": "sk-" + "0" * 64})
    assert status == 404 and body["code"] == 404

    updated = admin.ok(
        "PUT", f"/api/admin/api-keys/{key['id']}", json={"price_rate": 0.25, "daily_limit": 500}
    )
    assert (updated["price_rate"], updated["daily_limit"]) == (0.25, 500)
    assert admin.ok("GET", f"/api/admin/api-keys/{key['id']}")["daily_limit"] == 500
    assert admin.ok("DELETE", f"/api/admin/api-keys/{key['id']}") is None
    assert admin.get(f"/api/admin/api-keys/{key['id']}")[0] == 404


def test_seeded_models_and_user_model_list(admin: Api, make_user: Callable[..., Api]) -> None:
    data = admin.ok("GET", "/api/admin/models?platform=claude-official&page_size=100")
    by_id = {m["model_id"]: m for m in data["items"]}
    haiku = by_id["claude-haiku-4-5"]
    assert (haiku["input_price"], haiku["output_price"]) == (1.0, 5.0)
    assert (haiku["cache_creation_price"], haiku["cache_read_price"]) == (1.25, 0.1)
    assert "claude-haiku-4-5-20251001" in haiku["aliases"]
    platforms = admin.ok("GET", "/api/admin/models/platforms")
    assert {"claude-official", "openai", "gemini"} <= set(platforms)
    assert admin.ok("GET", "/api/admin/models?platform=openai&keyword=gpt-4o-mini")["total"] >= 1

    user = make_user()
    listed = {m["id"]: m for m in user.ok("GET", "/api/models")}
    assert listed["gpt-4o"]["platform"] == "openai" and listed["gpt-4o"]["input_price"] > 0
    assert listed["gemini-2.5-flash"]["output_price"] > 0

    gpt4o = admin.ok("GET", "/api/admin/models?keyword=gpt-4o&platform=openai&page_size=100")["items"]
    target = next(m for m in gpt4o if m["model_id"] == "gpt-4o")
    assert admin.ok("PUT", f"/api/admin/models/{target['id']}/toggle")["enabled"] is False
    assert "gpt-4o" not in {m["id"] for m in user.ok("GET", "/api/models")}
    assert admin.ok("PUT", f"/api/admin/models/{target['id']}/toggle")["enabled"] is True


def test_model_crud_and_defaults(admin: Api) -> None:
    model_id = f"custom-{uuid.uuid4().hex[:6]}"
    created = admin.ok(
        "POST",
        "/api/admin/models",
        json={
            "model_id": model_id,
            "model_name": "Custom",
            "platform": "openai",
            "input_price": 1.5,
            "output_price": 6,
            "cache_read_price": 0.15,
        },
    )
    assert (
        created["is_default"] is False and created["enabled"] is True and created["cache_read_price"] == 0.15
    )
    status, body = admin.post(
        "/api/admin/models",
        json={
            "model_id": model_id,
            "model_name": "Again",
            "platform": "openai",
            "input_price": 1,
            "output_price": 1,
        },
    )
    assert (status, body["message"]) == (400, "model_id already exists")
    status, body = admin.post(
        "/api/admin/models", json={"model_id": "x", "model_name": "x", "platform": "openai"}
    )
    assert status == 400 and body["message"] == "input_price: field required"
    status, body = admin.post(
        "/api/admin/models",
        json={"model_id": "y", "model_name": "y", "platform": "openai", "input_price": -1, "output_price": 1},
    )
    assert status == 400 and body["message"].startswith("input_price:")

    updated = admin.ok("PUT", f"/api/admin/models/{created['id']}", json={"output_price": 7.5})
    assert updated["output_price"] == 7.5 and updated["input_price"] == 1.5

    # init-defaults only fills gaps; reset-defaults restores seeded rows; custom rows stay.
    seeded = admin.ok("GET", "/api/admin/models?keyword=gpt-4.1-nano&platform=openai")["items"]
    nano = next(m for m in seeded if m["model_id"] == "gpt-4.1-nano")
    original_price = nano["input_price"]
    admin.ok("PUT", f"/api/admin/models/{nano['id']}", json={"input_price": 99})
    assert admin.ok("POST", "/api/admin/models/init-defaults") == {"created": 0, "updated": 0}
    assert admin.ok("GET", f"/api/admin/models/{nano['id']}")["input_price"] == 99
    mini = next(
        m
        for m in admin.ok("GET", "/api/admin/models?keyword=gpt-4.1-mini")["items"]
        if m["model_id"] == "gpt-4.1-mini"
    )
    admin.ok("DELETE", f"/api/admin/models/{mini['id']}")
    assert admin.ok("POST", "/api/admin/models/init-defaults")["created"] == 1
    reset = admin.ok("POST", "/api/admin/models/reset-defaults")
    assert reset["created"] == 0 and reset["updated"] >= 100
    assert admin.ok("GET", f"/api/admin/models/{nano['id']}")["input_price"] == original_price
    assert admin.ok("GET", f"/api/admin/models/{created['id']}")["output_price"] == 7.5

    assert admin.ok("DELETE", f"/api/admin/models/{created['id']}") is None
    assert admin.get(f"/api/admin/models/{created['id']}")[0] == 404
