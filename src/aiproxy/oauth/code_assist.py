"""Gemini OAuth accounts are served through Code Assist, inside a Google Cloud project: find it.

Like the Gemini CLI's setup (OAUTH.md §3.3): `loadCodeAssist` tells whether the user already has a
project; if not, the tier says whether Google provides one (free tier) or the user must name a
GCP project of their own (standard tier); `onboardUser` then assigns it, as a long-running
operation polled until `done`. The poll here is short and bounded (an admin waits on it): if
Google is not done yet, the onboarding route keeps the tokens and the admin simply repeats the
exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from . import clients
from .errors import OAuthError
from .transport import Transport, expect_json, send

# Seconds between onboardUser polls: the first retry comes quickly (often Google is done at once),
# the later ones back off; about ten seconds in all before the admin is asked to try again.
ONBOARD_DELAYS: tuple[float, ...] = (0.3, 1.0, 2.0, 3.0, 4.0)


class ProjectRequired(OAuthError):
    """The user's tier needs a Google Cloud project of their own, and none was given."""


class OnboardingPending(OAuthError):
    """onboardUser did not finish within the bounded wait."""


@dataclass(frozen=True, slots=True)
class Placement:
    project_id: str
    tier: str


def _metadata(project_id: str | None) -> dict[str, str]:
    meta = dict(clients.CODE_ASSIST_METADATA)
    if project_id:
        meta["duetProject"] = project_id
    return meta


def _project_of(value: Any) -> str | None:
    """A project as Code Assist reports it: an id string, or an object with an `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return (value.strip() or None) if isinstance(value, str) else None


def _pick_tier(answer: dict[str, Any]) -> dict[str, Any]:
    current = answer.get("currentTier")
    if isinstance(current, dict) and isinstance(current.get("id"), str):
        return current
    allowed = answer.get("allowedTiers")
    for tier in allowed if isinstance(allowed, list) else ():
        if isinstance(tier, dict) and tier.get("isDefault") and isinstance(tier.get("id"), str):
            return tier
    # Nothing said: the legacy tier, which always wants the user's own project.
    return {"id": clients.CODE_ASSIST_LEGACY_TIER, "userDefinedCloudaicompanionProject": True}


async def _call(
    settings: Settings, transport: Transport, access_token: str, method: str, body: dict[str, Any]
) -> dict[str, Any]:
    what = f"Code Assist {method}"
    url = f"{settings.gemini_code_assist_url.rstrip('/')}/v1internal:{method}"
    headers = {
        "authorization": f"Bearer {access_token}",
        "accept": "application/json",
        "user-agent": clients.CODE_ASSIST_USER_AGENT,
    }
    answer = await send(transport, "POST", url, what=what, headers=headers, json=body)
    return expect_json(answer, what)


async def discover_project(
    settings: Settings,
    transport: Transport,
    access_token: str,
    project_id: str | None,
    *,
    delays: Sequence[float] = ONBOARD_DELAYS,
) -> Placement:
    """The Code Assist project and tier of the account whose token this is."""
    load_body: dict[str, Any] = {"metadata": _metadata(project_id)}
    if project_id:
        load_body["cloudaicompanionProject"] = project_id
    loaded = await _call(settings, transport, access_token, "loadCodeAssist", load_body)
    tier = _pick_tier(loaded)
    tier_id = str(tier["id"])
    assigned = _project_of(loaded.get("cloudaicompanionProject"))
    if assigned:
        return Placement(assigned, tier_id)
    if tier.get("userDefinedCloudaicompanionProject") and not project_id:
        raise ProjectRequired(
            f"project_id: this Google account's Code Assist tier ({tier_id}) needs a Google Cloud "
            "project of your own; send its id as project_id"
        )
    onboard_body: dict[str, Any] = {"tierId": tier_id, "metadata": _metadata(project_id)}
    if project_id:
        onboard_body["cloudaicompanionProject"] = project_id
    for attempt in range(len(delays) + 1):
        operation = await _call(settings, transport, access_token, "onboardUser", onboard_body)
        if operation.get("done") is True:
            response = operation.get("response")
            found = (
                _project_of(response.get("cloudaicompanionProject")) if isinstance(response, dict) else None
            )
            found = found or project_id
            if not found:
                raise ProjectRequired(
                    "project_id: Code Assist assigned no project to this account; send the id of a "
                    "Google Cloud project as project_id"
                )
            return Placement(found, tier_id)
        if attempt < len(delays):
            await asyncio.sleep(delays[attempt])
    raise OnboardingPending(
        "Code Assist is still setting up this account's project; repeat the exchange with the same "
        "session_id in a minute (the login is kept)"
    )
