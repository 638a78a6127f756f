"""`GET /metrics`: the Prometheus text format (observe/metrics.py says what is in it).

Open unless `AIPROXY_METRICS_TOKEN` is set; then Prometheus sends it as a bearer token
(`authorization: {credentials: …}` in its scrape config) and anything else gets 401.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..observe.metrics import CONTENT_TYPE
from .envelope import error
from .openapi import error_responses

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}, **error_responses(401)},
)
async def metrics(request: Request) -> Response:
    """Counters, histograms and gauges of this instance (of all its workers with several)."""
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            return error(401, "unauthorized", {"WWW-Authenticate": "Bearer"})
    body = await request.app.state.gateway.metrics.exposition()
    return Response(body, media_type=CONTENT_TYPE)
