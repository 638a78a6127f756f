"""Admin: the system-log viewer — app log files by category and a whitelist of server logs.

Which names each source serves, and the 400/403/404 for the others, are decided in
observe/log_files.py; file work runs in a thread so a large file never holds the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from starlette.responses import StreamingResponse

from ...errors import Forbidden
from ...observe import log_files
from ...observe.logs import log_dir
from ..audit import AuditedRoute
from ..deps import ServicesDep, admin_user
from ..envelope import FastJSONResponse, ok
from ..numbers import PageNumber
from ..openapi import error_responses

router = APIRouter(
    prefix="/api/admin/system-logs",
    tags=["admin: system logs"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)

MAX_LINES = 1000
DEFAULT_PAGE_SIZE = 200
DEFAULT_TAIL = 100

SourceParam = Annotated[
    Literal["app", "server"],
    Query(description="`app`: the relay's log files; `server`: the whitelisted logs under /var/log"),
]
FileParam = Annotated[
    str,
    Query(
        max_length=255,
        description="a name from /files: `auth-2025-12-15.log` (app), `nginx/access.log` (server)",
    ),
]
LineCount = Annotated[int, Query(ge=1, description=f"more than {MAX_LINES} is served as {MAX_LINES}")]


def _root(services: ServicesDep, source: str) -> Path:
    return log_dir(services.settings) if source == "app" else services.settings.server_log_dir


def _file_info(name: str, status: os.stat_result) -> dict[str, object]:
    return {
        "file": name,
        "size": status.st_size,
        "size_human": log_files.size_human(status.st_size),
        "mod_time": log_files.mod_time(status),
    }


@router.get("/files")
async def list_log_files(
    services: ServicesDep,
    source: SourceParam = "app",
    category: Annotated[str | None, Query(max_length=32)] = None,
    date: Annotated[
        str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD; app logs only")
    ] = None,
) -> FastJSONResponse:
    root = _root(services, source)
    day = date if source == "app" else None
    listing = await asyncio.to_thread(log_files.list_files, source, root, category=category, day=day)
    return ok(listing)


@router.get("/read", responses=error_responses(404))
async def read_log(
    services: ServicesDep,
    file: FileParam,
    source: SourceParam = "app",
    page: PageNumber = 1,
    page_size: LineCount = DEFAULT_PAGE_SIZE,
    keyword: Annotated[str | None, Query(max_length=200)] = None,
    reverse: Annotated[str | None, Query(max_length=8, description='"true" for newest first')] = None,
) -> FastJSONResponse:
    page_size = min(page_size, MAX_LINES)
    newest_first = (reverse or "").lower() in ("true", "1")
    handle, status = await asyncio.to_thread(log_files.open_log, source, _root(services, source), file)
    try:
        lines, total = await asyncio.to_thread(
            log_files.read_page,
            handle,
            status.st_size,
            page=page,
            page_size=page_size,
            keyword=keyword or None,
            reverse=newest_first,
        )
    finally:
        handle.close()
    return ok(
        {
            **_file_info(file, status),
            "lines": lines,
            "page": page,
            "page_size": page_size,
            "total_lines": total,
            "total_pages": -(-total // page_size),
            "reverse": newest_first,
        }
    )


@router.get("/tail", responses=error_responses(404))
async def tail_log(
    services: ServicesDep,
    file: FileParam,
    source: SourceParam = "app",
    lines: LineCount = DEFAULT_TAIL,
) -> FastJSONResponse:
    count = min(lines, MAX_LINES)
    handle, status = await asyncio.to_thread(log_files.open_log, source, _root(services, source), file)
    try:
        last = await asyncio.to_thread(log_files.tail_lines, handle, status.st_size, count)
    finally:
        handle.close()
    return ok({**_file_info(file, status), "lines": last, "count": len(last)})


@router.get(
    "/download",
    response_class=StreamingResponse,
    responses={
        200: {"description": "the file as an attachment", "content": {"text/plain": {}}},
        **error_responses(404),
    },
)
async def download_log(
    services: ServicesDep, file: FileParam, source: SourceParam = "app"
) -> StreamingResponse:
    handle, status = await asyncio.to_thread(log_files.open_log, source, _root(services, source), file)
    size = status.st_size

    async def body() -> AsyncIterator[bytes]:
        try:
            chunks = log_files.stream(handle, size)
            while chunk := await asyncio.to_thread(next, chunks, b""):
                yield chunk
        finally:
            handle.close()

    # Served names are plain ASCII (see log_files); `nginx/access.log` is saved as `nginx_access.log`.
    disposition = f'attachment; filename="{file.replace("/", "_")}"'
    return StreamingResponse(
        body(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": disposition, "Content-Length": str(size)},
    )


@router.delete("/file", responses=error_responses(404))
async def delete_log(services: ServicesDep, file: FileParam, source: SourceParam = "app") -> FastJSONResponse:
    if source != "app":
        raise Forbidden(log_files.SERVER_DELETE)
    await asyncio.to_thread(log_files.delete_app_log, _root(services, source), file)
    return ok({"message": "删除成功"})
