"""The `/api` response envelope: `{"code":0,"message":"success","data":…}`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson
from starlette.responses import JSONResponse

# datetimes are serialised as RFC 3339 UTC with a trailing "Z".
_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=_ORJSON_OPTIONS)


def ok(data: Any = None, *, message: str = "success") -> FastJSONResponse:
    return FastJSONResponse({"code": 0, "message": message, "data": data})


def created(data: Any = None) -> FastJSONResponse:
    return FastJSONResponse({"code": 0, "message": "created", "data": data}, status_code=201)


def page(items: list[Any], *, total: int, page: int, page_size: int) -> FastJSONResponse:
    return ok({"items": items, "total": total, "page": page, "page_size": page_size})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> FastJSONResponse:
    return FastJSONResponse({"code": status, "message": message}, status_code=status, headers=headers)
