"""The request a log line belongs to.

The gateway sets `request_id` at the start of each proxy request (its task runs in its own
context, so concurrent requests never see each other's id); the log-file formatter writes it on
every line logged while that request is handled. Outside a request it is empty.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("aiproxy_request_id", default="")
