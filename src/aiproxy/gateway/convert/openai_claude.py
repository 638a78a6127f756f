"""OpenAI Chat Completions client → Claude (Anthropic Messages) upstream.

Pure functions over already-decoded JSON (dicts) and SSE bytes: no I/O, no pydantic. Large untouched parts
(tool schemas, image data, tool results) are referenced, never copied.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .chat_stream import ChatChunkStream, sse_data

__all__ = [
    "ClaudeToChatStream",
    "chat_request_to_claude",
    "claude_error_to_openai",
    "claude_response_to_chat",
    "claude_usage",
    "wants_stream_usage",
]

# Claude requires max_tokens; OpenAI clients usually leave it out.
DEFAULT_MAX_TOKENS = 8192
# reasoning_effort → thinking budget_tokens ("minimal"/"none" and unknown values: no thinking).
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
# Arguments that are not a JSON object cannot become a tool_use input (Claude wants an object): they are
# kept verbatim under this key so the model still sees what it sent.
RAW_ARGUMENTS_KEY = "_raw_arguments"

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# HTTP status → Anthropic error type → OpenAI error code (the Anthropic type is passed on: informative).
_ERRORS = (
    (401, "authentication_error", "invalid_api_key"),
    (403, "permission_error", "permission_denied"),
    (404, "not_found_error", "not_found"),
    (413, "request_too_large", "request_too_large"),
    (429, "rate_limit_error", "rate_limit_exceeded"),
    (500, "api_error", "server_error"),
    (529, "overloaded_error", "overloaded"),
)
_STATUS_ERROR_TYPES = {status: etype for status, etype, _ in _ERRORS}
_ERROR_CODES = {etype: code for _, etype, code in _ERRORS}
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def chat_request_to_claude(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Build a Claude Messages request from an OpenAI Chat Completions body (unknown fields ignored)."""
    system, messages = _convert_messages(body.get("messages") or [])
    _strip_prefill(messages)
    out: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        out["system"] = system
    out["max_tokens"] = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    _copy_sampling(body, out)
    tools = [t for t in map(_convert_tool, body.get("tools") or ()) if t is not None]
    if tools:
        out["tools"] = tools
        choice = _convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if body.get("stream"):
        out["stream"] = True
    if user := body.get("user"):
        out["metadata"] = {"user_id": str(user)}
    _apply_thinking(body.get("reasoning_effort"), out)
    return out


def wants_stream_usage(body: dict[str, Any]) -> bool:
    """Whether the client asked for the final usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _copy_sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if isinstance(temperature, int | float):
        out["temperature"] = min(float(temperature), 1.0)  # OpenAI allows 0..2, Claude 0..1
    top_p = body.get("top_p")
    if isinstance(top_p, int | float):
        out["top_p"] = top_p
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list):
        # Claude rejects whitespace-only stop sequences.
        sequences = [s for s in stop if isinstance(s, str) and s.strip()]
        if sequences:
            out["stop_sequences"] = sequences


def _apply_thinking(effort: Any, out: dict[str, Any]) -> None:
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return
    choice = out.get("tool_choice")
    if choice is not None and choice["type"] in ("any", "tool"):
        return  # Claude refuses thinking with a forced tool; the forced tool is the harder requirement
    last = out["messages"][-1] if out["messages"] else {}
    if isinstance(last.get("content"), list) and last["content"][0].get("type") == "tool_result":
        # A tool loop continues whose assistant turn has no thinking block (OpenAI clients cannot send one
        # back with its signature): Claude rejects thinking there.
        return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if out["max_tokens"] <= budget:
        out["max_tokens"] += budget  # keep the client's answer room on top of the thinking budget
    # With thinking, Claude only accepts the default temperature and top_p >= 0.95.
    out.pop("temperature", None)
    if out.get("top_p", 1) < 0.95:
        del out["top_p"]


def _convert_tool(tool: Any) -> dict[str, Any] | None:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        return None
    fn = tool.get("function")
    if not isinstance(fn, dict) or not fn.get("name"):
        return None
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _convert_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name", "")}
    elif choice == "auto" or parallel is False:
        out = {"type": "auto"}
    else:
        return None
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _convert_messages(messages: list[Any]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    plain_system = True  # every system message was a plain string: send a plain string
    out: list[dict[str, Any]] = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            plain_system &= isinstance(content, str)
            system.extend(_content_blocks(content))
        elif role == "user":
            _append(out, "user", content if isinstance(content, str) else _content_blocks(content))
        elif role == "assistant":
            _append(out, "assistant", _assistant_content(msg))
        elif role == "tool":
            _append(out, "user", [_tool_result(msg)])
    if not system:
        return None, out
    if plain_system:
        return "\n\n".join(b["text"] for b in system), out
    return system, out


def _strip_prefill(messages: list[dict[str, Any]]) -> None:
    # A final assistant message is a prefill, and Claude rejects one that ends in whitespace.
    last = messages[-1] if messages else {}
    content = last.get("content")
    if last.get("role") != "assistant":
        return
    if isinstance(content, str):
        last["content"] = content.rstrip()  # an empty final assistant message is allowed
    elif content[-1].get("type") == "text":
        text = content[-1]["text"].rstrip()
        if text:
            content[-1] = {**content[-1], "text": text}
        else:  # an empty text block is not
            content.pop()
            last["content"] = content or ""


def _append(out: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Add a message, merging it into the previous one of the same role (Claude wants alternation)."""
    if not content:
        return  # Claude rejects empty messages; merging around the gap keeps the roles alternating
    if out and out[-1]["role"] == role:
        prev = out[-1]
        if isinstance(prev["content"], str):
            prev["content"] = [{"type": "text", "text": prev["content"]}]
        prev["content"].extend([{"type": "text", "text": content}] if isinstance(content, str) else content)
        return
    out.append({"role": role, "content": content})


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    blocks = []
    for part in content:
        block = _convert_part(part) if isinstance(part, dict) else None
        if block is not None:
            blocks.append(block)
    return blocks


def _convert_part(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str) or not text:
            return None  # Claude rejects empty text blocks
        block: dict[str, Any] = {"type": "text", "text": text}
        if "cache_control" in part:  # sent by some clients to steer Claude prompt caching
            block["cache_control"] = part["cache_control"]
        return block
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return {"type": "image", "source": {"type": "url", "url": url}}
        return _base64_block("image", url)
    if kind == "file":  # only inline PDFs have a Claude equivalent (a document block); file ids do not
        file = part.get("file")
        return _base64_block("document", file.get("file_data") if isinstance(file, dict) else None)
    return None


def _base64_block(kind: str, url: Any) -> dict[str, Any] | None:
    """An image or document block from a ``data:<media type>;base64,<data>`` URL."""
    header, sep, data = url.partition(",") if isinstance(url, str) else ("", "", "")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    media_type = header[5:-7]
    if kind == "document" and media_type != "application/pdf":
        return None
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_content(msg: dict[str, Any]) -> str | list[dict[str, Any]]:
    content = msg.get("content")
    tool_calls = msg.get("tool_calls")
    if not tool_calls:
        return content if isinstance(content, str) else _content_blocks(content)
    blocks = _content_blocks(content)
    for call in tool_calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            block = {"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", "")}
            block["input"] = _decode_arguments(fn.get("arguments"))
            blocks.append(block)
    return blocks


def _decode_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: arguments}


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id", "")}
    content = msg.get("content")
    if isinstance(content, list):
        content = _content_blocks(content)
    if content:  # an empty tool result is sent without content rather than as an empty text block
        block["content"] = content
    return block


def claude_response_to_chat(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Convert a non-stream Claude Messages response to an OpenAI ``chat.completion`` object."""
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in resp.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name", ""), "arguments": arguments}
            tool_calls.append({"id": block.get("id", ""), "type": "function", "function": function})
    content = "".join(texts) if texts or not tool_calls else None  # OpenAI: null beside tool calls
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    finish = _FINISH_REASONS.get(resp.get("stop_reason") or "", "stop")
    return {
        "id": "chatcmpl-" + str(resp.get("id", "")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": chat_usage(claude_usage(resp.get("usage"))),
    }


def claude_usage(usage: Any, into: dict[str, int] | None = None) -> dict[str, int]:
    """The four Claude usage counters (null or absent → 0); with ``into``, only keys present override."""
    out = into if into is not None else dict.fromkeys(_USAGE_KEYS, 0)
    if isinstance(usage, dict):
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int):
                out[key] = value
    return out


def chat_usage(usage: dict[str, int]) -> dict[str, Any]:
    """OpenAI usage from Claude's: OpenAI's prompt count includes cache reads and writes."""
    cache_read = usage["cache_read_input_tokens"]
    prompt = usage["input_tokens"] + usage["cache_creation_input_tokens"] + cache_read
    completion = usage["output_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def claude_error_to_openai(status: int, body: bytes) -> bytes:
    """An Anthropic error body (or any body) as an OpenAI error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    etype = _STATUS_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return orjson.dumps(_openai_error(err["message"], err.get("type") or etype))
    if isinstance(err, str):
        return orjson.dumps(_openai_error(err, etype))
    text = body[:2000].decode("utf-8", "replace").strip() or f"upstream returned HTTP {status}"
    return orjson.dumps(_openai_error(text, etype))


def _openai_error(message: str, etype: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None, "code": _ERROR_CODES.get(etype)}}


class ClaudeToChatStream(ChatChunkStream):
    """Incrementally convert Claude Messages SSE bytes into OpenAI chat completion chunks (SSE bytes).

    ``feed`` may be called with any slicing of the upstream bytes; the output does not depend on it.
    ``usage`` always holds the latest Claude counters seen (message_start, then message_delta's totals),
    so a relay can bill a stream that was cut. ``completed`` turns true at ``message_stop``; ``[DONE]`` is
    only ever sent then.
    """

    def __init__(self, *, model: str, include_usage: bool, created: int | None = None) -> None:
        super().__init__(model=model, include_usage=include_usage, created=created)
        self.usage: dict[str, int] = dict.fromkeys(_USAGE_KEYS, 0)
        self._tools: dict[int, int] = {}  # Claude content block index → OpenAI tool call index
        self._finished = False  # finish_reason chunk sent

    def _cut_error(self, message: str) -> dict[str, Any]:
        return _openai_error(message, "api_error")

    # -- internals

    def _convert(self, events: list[tuple[str | None, bytes]]) -> bytes:
        if not events:
            return b""
        out: list[bytes] = []
        for name, data in events:
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue  # a keep-alive or a torn frame carries nothing to convert
            if isinstance(payload, dict):
                self._event(payload.get("type") or name, payload, out)
        return b"".join(out)

    def _event(self, kind: Any, ev: dict[str, Any], out: list[bytes]) -> None:
        if kind == "content_block_delta":
            self._delta(ev, out)
        elif kind == "content_block_start":
            self._block_start(ev, out)
        elif kind == "message_start":
            self._message_start(ev, out)
        elif kind == "message_delta":
            claude_usage(ev.get("usage"), self.usage)
            reason = (ev.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish_chunk(_FINISH_REASONS.get(reason, "stop"), out)
        elif kind == "message_stop":
            self._message_stop(out)
        elif kind == "error":
            self.errored = True
            err = ev.get("error") if isinstance(ev.get("error"), dict) else {}
            message = err.get("message") or "upstream error"
            out.append(sse_data(_openai_error(message, err.get("type") or "api_error")))

    def _message_start(self, ev: dict[str, Any], out: list[bytes]) -> None:
        message = ev.get("message") or {}
        if message.get("id"):
            self._set_id("chatcmpl-" + str(message["id"]))
        claude_usage(message.get("usage"), self.usage)
        out.append(self._chunk(b'{"role":"assistant","content":""}'))

    def _block_start(self, ev: dict[str, Any], out: list[bytes]) -> None:
        block = ev.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            index = self._tools[ev.get("index", -1)] = len(self._tools)
            fn = {"name": block.get("name", ""), "arguments": ""}
            call = {"index": index, "id": block.get("id", ""), "type": "function", "function": fn}
            out.append(self._chunk(orjson.dumps({"tool_calls": [call]})))
        elif kind == "text" and block.get("text"):
            out.append(self._chunk(orjson.dumps({"content": block["text"]})))
        elif kind == "thinking" and block.get("thinking"):
            out.append(self._chunk(orjson.dumps({"reasoning_content": block["thinking"]})))

    def _delta(self, ev: dict[str, Any], out: list[bytes]) -> None:
        delta = ev.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            out.append(self._chunk(orjson.dumps({"content": delta.get("text", "")})))
        elif kind == "thinking_delta":
            out.append(self._chunk(orjson.dumps({"reasoning_content": delta.get("thinking", "")})))
        elif kind == "input_json_delta":
            partial = delta.get("partial_json")
            index = self._tools.get(ev.get("index", -1))
            if partial and index is not None:
                call = {"index": index, "function": {"arguments": partial}}
                out.append(self._chunk(orjson.dumps({"tool_calls": [call]})))

    def _message_stop(self, out: list[bytes]) -> None:
        if not self._finished:  # message_delta normally carries the stop reason; be lenient without it
            self._finish_chunk("tool_calls" if self._tools else "stop", out)
        self.completed = True
        if self.include_usage:
            usage = orjson.dumps(chat_usage(self.usage))
            out.append(b"data: " + self._head + b',"choices":[],"usage":' + usage + b"}\n\n")
        out.append(b"data: [DONE]\n\n")

    def _finish_chunk(self, reason: str, out: list[bytes]) -> None:
        self._finished = True
        out.append(self._chunk(b"{}", reason.encode()))
