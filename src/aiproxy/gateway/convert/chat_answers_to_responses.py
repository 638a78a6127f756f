"""OpenAI chat completion answers (whole, streamed, errors) → an OpenAI Responses API client.

The second half of serving a Responses client from another family. Reasoning text becomes a reasoning
item with a summary (lost: encrypted reasoning content, which only a Responses upstream can carry on to
the next turn). Errors keep the OpenAI error shape both APIs share.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .chat_reader import ChatStreamReader, chat_message, error_message, usage_numbers

__all__ = ["ChatToResponsesStream", "chat_error_to_responses", "chat_response_to_responses"]

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def responses_usage_of(usage: Any) -> dict[str, Any]:
    prompt, completion, cached, reasoning = usage_numbers(usage)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _response(
    rid: str, created: int, model: str, status: str, output: list[Any], usage: Any
) -> dict[str, Any]:
    """`status`: in_progress, or the chat finish reason of a finished answer."""
    reason = _INCOMPLETE.get(status)
    status = status if status == "in_progress" or reason else "completed"
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": "incomplete" if reason else status,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": None,
        "metadata": {},
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": usage,
    }


def _message(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [part]}


def _reasoning(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def _function_call(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    item = {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name}
    return {**item, "arguments": arguments}


def chat_response_to_responses(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A whole ``chat.completion`` as a Responses ``response`` object."""
    message, finish = chat_message(resp)
    base = str(resp.get("id") or "").removeprefix("chatcmpl-")
    output: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        output.append(_reasoning(f"rs_{base}", message["reasoning_content"]))
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(_message(f"msg_{base}", text))
    if message.get("refusal"):
        part = {"type": "refusal", "refusal": message["refusal"]}
        output.append({"id": f"msg_{base}_r", "type": "message", "status": "completed", "role": "assistant"})
        output[-1]["content"] = [part]
    for i, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        arguments = fn.get("arguments") if isinstance(fn.get("arguments"), str) else "{}"
        output.append(
            _function_call(
                f"fc_{base}_{i}", call.get("id") or "", fn.get("name") or "", arguments, "completed"
            )
        )
    created = resp.get("created") if isinstance(resp.get("created"), int) else int(time.time())
    return _response(f"resp_{base}", created, model, finish, output, responses_usage_of(resp.get("usage")))


def chat_error_to_responses(status: int, body: bytes) -> bytes:
    """An OpenAI error body stays one (both APIs share the shape); any other body becomes one."""
    message, code = error_message(body, status)
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


class ChatToResponsesStream(ChatStreamReader):
    """Chat completion chunks → Responses stream events (response.created … response.completed).

    Output items open as the deltas change kind (reasoning, message, one per tool call) and are closed
    (their ``.done`` events) before the next; ``response.completed`` repeats the whole output and usage."""

    def __init__(self, *, model: str) -> None:
        super().__init__()
        self.model = model
        self._seq = 0
        self._started = False
        self._rid = "resp_"
        self._created = int(time.time())
        self._items: list[dict[str, Any]] = []  # output items, done or open
        self._open: dict[str, Any] | None = None  # the open item
        self._texts: dict[int, list[str]] = {}  # output index → text (or arguments) pieces
        self._tools: dict[Any, int] = {}  # chat tool call index → output index

    def _event(self, name: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": name, "sequence_number": self._seq, **payload}
        self._seq += 1
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _head(self, chunk: dict[str, Any]) -> None:
        if not self._started and chunk.get("id"):
            self._rid = "resp_" + str(chunk["id"]).removeprefix("chatcmpl-")
            if isinstance(chunk.get("created"), int):
                self._created = chunk["created"]

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        pending = _response(self._rid, self._created, self.model, "in_progress", [], None)
        return self._event("response.created", {"response": pending}) + self._event(
            "response.in_progress", {"response": pending}
        )

    def _open_item(self, kind: str, key: Any, item: dict[str, Any]) -> bytes:
        open_ = self._open
        if open_ is not None and open_["type"] == kind and open_.get("_key") == key:
            return b""
        out = self._close_item()
        index = len(self._items)
        self._open = {**item, "_key": key, "_index": index}
        self._items.append(item)
        self._texts[index] = []
        if kind == "function_call":
            self._tools[key] = index
        out += self._event("response.output_item.added", {"output_index": index, "item": item})
        ids = {"item_id": item["id"], "output_index": index}
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += self._event("response.content_part.added", {**ids, "content_index": 0, "part": part})
        elif kind == "reasoning":
            part = {"type": "summary_text", "text": ""}
            out += self._event(
                "response.reasoning_summary_part.added", {**ids, "summary_index": 0, "part": part}
            )
        return out

    def _close_item(self) -> bytes:
        open_ = self._open
        if open_ is None:
            return b""
        self._open = None
        index = open_["_index"]
        item = self._items[index]
        text = "".join(self._texts[index])
        ids = {"item_id": item["id"], "output_index": index}
        out = b""
        if item["type"] == "message":
            done = _message(item["id"], text)
            out += self._event(
                "response.output_text.done", {**ids, "content_index": 0, "text": text, "logprobs": []}
            )
            out += self._event(
                "response.content_part.done", {**ids, "content_index": 0, "part": done["content"][0]}
            )
        elif item["type"] == "reasoning":
            done = _reasoning(item["id"], text)
            out += self._event(
                "response.reasoning_summary_text.done", {**ids, "summary_index": 0, "text": text}
            )
            part = done["summary"][0]
            out += self._event(
                "response.reasoning_summary_part.done", {**ids, "summary_index": 0, "part": part}
            )
        else:
            done = {**item, "status": "completed", "arguments": text}
            out += self._event("response.function_call_arguments.done", {**ids, "arguments": text})
        self._items[index] = done
        return out + self._event("response.output_item.done", {"output_index": index, "item": done})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = [self._start()]
        base = self._rid.removeprefix("resp_")
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            item = {"id": f"rs_{base}_{len(self._items)}", "type": "reasoning", "summary": []}
            out.append(self._open_item("reasoning", None, item))
            index = self._open["_index"]  # type: ignore[index]
            self._texts[index].append(reasoning)
            ids = {"item_id": self._items[index]["id"], "output_index": index, "summary_index": 0}
            out.append(self._event("response.reasoning_summary_text.delta", {**ids, "delta": reasoning}))
        text = delta.get("content")
        if isinstance(text, str) and text:
            item = {"id": f"msg_{base}_{len(self._items)}", "type": "message", "status": "in_progress"}
            item |= {"role": "assistant", "content": []}
            out.append(self._open_item("message", None, item))
            index = self._open["_index"]  # type: ignore[index]
            self._texts[index].append(text)
            ids = {"item_id": self._items[index]["id"], "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.delta", {**ids, "delta": text, "logprobs": []}))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            key = call.get("index", 0)
            fn = call.get("function") or {}
            if key not in self._tools:
                item = _function_call(
                    f"fc_{base}_{len(self._items)}",
                    call.get("id") or "",
                    fn.get("name") or "",
                    "",
                    "in_progress",
                )
                out.append(self._open_item("function_call", key, item))
            index = self._tools[key]
            arguments = fn.get("arguments")
            if isinstance(arguments, str) and arguments:
                self._texts[index].append(arguments)
                ids = {"item_id": self._items[index]["id"], "output_index": index}
                out.append(self._event("response.function_call_arguments.delta", {**ids, "delta": arguments}))
        return b"".join(out)

    def _done(self) -> bytes:
        out = self._start() + self._close_item()
        finish = self.finish_reason or "stop"
        final = _response(
            self._rid, self._created, self.model, finish, self._items, responses_usage_of(self.usage)
        )
        name = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return out + self._event(name, {"response": final})

    def _error(self, error: dict[str, Any]) -> bytes:
        message = error.get("message") or "upstream error"
        code = error.get("code") if isinstance(error.get("code"), str) else "server_error"
        return self._start() + self._event("error", {"code": code, "message": message, "param": None})
