"""OpenAI Chat Completions client → OpenAI Responses API upstream (openai-responses accounts: an API key,
or Codex through a ChatGPT subscription).

Pure functions over already-decoded JSON (dicts) and SSE bytes: no I/O, no pydantic. Large untouched parts
(tool schemas, image data) are referenced, never copied. What a Responses request cannot express and that
changes the answer (several choices, stop sequences, logprobs, audio, penalties, legacy functions, tools
other than functions) raises `ChatRequestUnsupported` (the relay answers 400) instead of being dropped;
fields without an effect on the answer's content (`seed`, `prediction`, `stream_options`) are left out.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .chat_stream import ChatChunkStream, sse_data
from .refusal import Unconvertible

__all__ = [
    "ChatRequestUnsupported",
    "ResponsesToChatStream",
    "chat_request_to_responses",
    "responses_error_to_openai",
    "responses_response_to_chat",
    "responses_usage_to_chat",
]

# Fields copied as they are when the client set them (same name and meaning in both APIs).
_PASSED_FIELDS = ("temperature", "top_p", "parallel_tool_calls", "user", "metadata", "service_tier")
_PASSED_FIELDS += ("prompt_cache_key", "safety_identifier")
# Sampling fields Responses does not have: refused unless left at their neutral value.
_NEUTRAL_ZERO = ("frequency_penalty", "presence_penalty")
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}
# HTTP status → OpenAI error type, for errors that do not name one (other 4xx: invalid_request_error).
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
_ERROR_TYPES[429] = "rate_limit_exceeded"
# Stream events that carry nothing a chat client sees: skipped without being parsed (the `.done`
# events repeat whole texts).
_IGNORED_EVENTS = frozenset(
    f"response.{name}"
    for name in (
        *("in_progress", "queued", "content_part.added", "content_part.done", "output_text.done"),
        *("output_text.annotation.added", "refusal.done", "reasoning_text.done"),
        *("reasoning_summary_part.added", "reasoning_summary_part.done", "reasoning_summary_text.done"),
    )
)
_REASONING_DELTAS = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})


class ChatRequestUnsupported(Unconvertible):
    """A Chat Completions request a Responses API account cannot serve as asked (the client's 400)."""


# -- requests ---------------------------------------------------------------------------------------------


def chat_request_to_responses(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Build a Responses API request from an OpenAI Chat Completions body.

    Raises `ChatRequestUnsupported` for what cannot be expressed; unknown fields are ignored."""
    _refuse_inexpressible(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ChatRequestUnsupported("messages", "must be a list of messages")
    instructions, items = _convert_messages(messages)
    out: dict[str, Any] = {"model": model}
    if instructions:
        out["instructions"] = instructions
    out["input"] = items
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        out["max_output_tokens"] = limit
    for name in _PASSED_FIELDS:
        value = body.get(name)
        if value is not None:
            out[name] = value
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise ChatRequestUnsupported("tools", "must be a list")
        out["tools"] = [_convert_tool(i, tool) for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = _convert_tool_choice(choice)
    text = _text_options(body)
    if text:
        out["text"] = text
    effort = body.get("reasoning_effort")
    if effort is not None:
        out["reasoning"] = {"effort": effort}
    if body.get("stream"):
        out["stream"] = True
    out["store"] = body.get("store") is True  # Chat Completions stores nothing unless asked; Responses does
    return out


def _refuse_inexpressible(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise ChatRequestUnsupported("n", "a Responses API account answers with one choice only")
    stop = body.get("stop")
    if stop:  # null, "" and [] ask for nothing
        raise ChatRequestUnsupported("stop", "stop sequences are not supported by Responses API accounts")
    if body.get("logprobs"):
        raise ChatRequestUnsupported(
            "logprobs", "log probabilities are not supported by Responses API accounts"
        )
    for name in _NEUTRAL_ZERO:
        value = body.get(name)
        if value is not None and value != 0:
            raise ChatRequestUnsupported(name, "not supported by Responses API accounts")
    if body.get("logit_bias"):
        raise ChatRequestUnsupported("logit_bias", "not supported by Responses API accounts")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise ChatRequestUnsupported("audio", "audio output is not supported by Responses API accounts")
    for legacy in ("functions", "function_call"):
        if body.get(legacy):
            raise ChatRequestUnsupported(legacy, "deprecated: use tools and tool_choice")
    if body.get("web_search_options") is not None:
        raise ChatRequestUnsupported("web_search_options", "not supported by Responses API accounts")


def _convert_messages(messages: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """`instructions` (system and developer messages, in order) and the `input` items."""
    system: list[str] = []
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise ChatRequestUnsupported(where, "must be an object")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = _plain_text(content, f"{where}.content")
            if text:
                system.append(text)
        elif role == "user":
            parts = _user_parts(content, f"{where}.content")
            if parts:
                items.append({"type": "message", "role": "user", "content": parts})
        elif role == "assistant":
            _assistant_items(msg, where, items)
        elif role == "tool":
            output = _plain_text(content, f"{where}.content")
            items.append(
                {"type": "function_call_output", "call_id": msg.get("tool_call_id") or "", "output": output}
            )
        else:
            raise ChatRequestUnsupported(f"{where}.role", f"role {role!r} is not supported")
    return "\n\n".join(system), items


def _plain_text(content: Any, where: str) -> str:
    """A string, or text parts joined (system, developer and tool messages carry text only)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ChatRequestUnsupported(where, "must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ChatRequestUnsupported(f"{where}[{j}]", "only text parts are supported here")
        texts.append(part["text"])
    return "".join(texts)


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise ChatRequestUnsupported(where, "must be a string or a list of content parts")
    return [_user_part(part, f"{where}[{j}]") for j, part in enumerate(content)]


def _user_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "input_text", "text": part.get("text") or ""}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise ChatRequestUnsupported(where, "image_url.url required")
        detail = image.get("detail") if isinstance(image, dict) else None
        return {"type": "input_image", "image_url": url, "detail": detail or "auto"}
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, dict) or not (file.get("file_data") or file.get("file_id")):
            raise ChatRequestUnsupported(where, "file.file_data or file.file_id required")
        out = {"type": "input_file"}
        for name in ("file_id", "file_data", "filename"):
            if file.get(name):
                out[name] = file[name]
        return out
    if kind == "input_audio":
        raise ChatRequestUnsupported(where, "audio input is not supported by Responses API accounts")
    raise ChatRequestUnsupported(where, f"content part type {kind!r} is not supported")


def _assistant_items(msg: dict[str, Any], where: str, items: list[dict[str, Any]]) -> None:
    """An assistant turn: its text as a message item, then one `function_call` item per tool call."""
    if msg.get("audio") is not None:
        raise ChatRequestUnsupported(f"{where}.audio", "audio is not supported by Responses API accounts")
    content = msg.get("content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            parts.append({"type": "output_text", "text": content})
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and part.get("text"):
                parts.append({"type": "output_text", "text": part["text"]})
            elif kind == "refusal" and part.get("refusal"):
                parts.append({"type": "refusal", "refusal": part["refusal"]})
            elif kind not in ("text", "refusal"):
                raise ChatRequestUnsupported(
                    f"{where}.content[{j}]", f"content part type {kind!r} is not supported"
                )
    elif content is not None:
        raise ChatRequestUnsupported(f"{where}.content", "must be a string or a list of content parts")
    if isinstance(msg.get("refusal"), str) and msg["refusal"] and not parts:
        parts.append({"type": "refusal", "refusal": msg["refusal"]})
    if parts:
        items.append({"type": "message", "role": "assistant", "content": parts})
    for j, call in enumerate(msg.get("tool_calls") or ()):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type", "function") != "function":
            raise ChatRequestUnsupported(f"{where}.tool_calls[{j}]", "only function tool calls are supported")
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        item = {"type": "function_call", "call_id": call.get("id") or "", "name": fn.get("name") or ""}
        items.append({**item, "arguments": arguments})


def _convert_tool(i: int, tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise ChatRequestUnsupported(f"tools[{i}]", f"tool type {kind!r} is not supported (functions only)")
    fn = tool.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ChatRequestUnsupported(f"tools[{i}].function.name", "required")
    out: dict[str, Any] = {"type": "function", "name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    # Responses makes function tools strict by default, Chat Completions does not: say it.
    out["strict"] = fn.get("strict") is True
    return out


def _convert_tool_choice(choice: Any) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        return {"type": "function", "name": choice["function"]["name"]}
    if kind == "allowed_tools" and isinstance(choice.get("allowed_tools"), dict):
        allowed = choice["allowed_tools"]
        tools = []
        for j, tool in enumerate(allowed.get("tools") or ()):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not fn.get("name"):
                raise ChatRequestUnsupported(
                    f"tool_choice.allowed_tools.tools[{j}]", "only functions are supported"
                )
            tools.append({"type": "function", "name": fn["name"]})
        return {"type": "allowed_tools", "mode": allowed.get("mode") or "auto", "tools": tools}
    raise ChatRequestUnsupported("tool_choice", "not supported by Responses API accounts")


def _text_options(body: dict[str, Any]) -> dict[str, Any]:
    text: dict[str, Any] = {}
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind in ("text", "json_object"):
            text["format"] = {"type": kind}
        elif kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            schema = fmt["json_schema"]
            out = {
                "type": "json_schema",
                "name": schema.get("name") or "response",
                "schema": schema.get("schema"),
            }
            for name in ("description", "strict"):
                if schema.get(name) is not None:
                    out[name] = schema[name]
            text["format"] = out
        else:
            raise ChatRequestUnsupported("response_format", f"type {kind!r} is not supported")
    if body.get("verbosity") is not None:
        text["verbosity"] = body["verbosity"]
    return text


# -- whole answers ----------------------------------------------------------------------------------------


def responses_response_to_chat(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Convert a Responses object to an OpenAI ``chat.completion`` (a failed response raises ValueError)."""
    status = resp.get("status")
    if status == "failed":
        error = resp.get("error") if isinstance(resp.get("error"), dict) else {}
        raise ValueError(f"the response failed: {error.get('message') or 'no reason given'}")
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in resp.get("output") or ():
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
        elif kind == "function_call":
            function = {"name": item.get("name") or "", "arguments": item.get("arguments") or "{}"}
            call_id = item.get("call_id") or item.get("id") or ""
            tool_calls.append({"id": call_id, "type": "function", "function": function})
        elif kind == "reasoning":
            for part in (*(item.get("summary") or ()), *(item.get("content") or ())):
                if isinstance(part, dict) and part.get("text"):
                    reasoning.append(part["text"])
    content = "".join(texts) if texts or not (tool_calls or refusals) else None  # null beside tool calls
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": "".join(refusals) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    finish = _finish_reason(status, resp.get("incomplete_details"), bool(tool_calls))
    created = resp.get("created_at")
    return {
        "id": "chatcmpl-" + str(resp.get("id", "")),
        "object": "chat.completion",
        "created": int(created) if isinstance(created, int | float) else int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": responses_usage_to_chat(resp.get("usage")),
    }


def _finish_reason(status: Any, incomplete: Any, tool_calls: bool) -> str:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return _INCOMPLETE_REASONS.get(reason, "length")
    return "tool_calls" if tool_calls else "stop"


def responses_usage_to_chat(usage: Any) -> dict[str, Any] | None:
    """Chat usage from Responses usage (both count cached tokens inside the prompt); None without one."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    cached = _count(usage.get("input_tokens_details"), "cached_tokens")
    reasoning = _count(usage.get("output_tokens_details"), "reasoning_tokens")
    total = usage.get("total_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if isinstance(total, int) else prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _count(value: Any, key: str = "") -> int:
    """A token count (or `key` of a details object); anything else counts 0."""
    if key:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, int) else 0


# -- errors -----------------------------------------------------------------------------------------------


def responses_error_to_openai(status: int, body: bytes) -> bytes:
    """A Responses API error body (or any body: the ChatGPT backend's ``{"detail": …}``, plain text) as an
    OpenAI Chat Completions error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    etype = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        # Extra fields (the ChatGPT plan limit's `resets_in_seconds`, `plan_type`) are kept.
        shaped = {**err, "type": err.get("type") or etype, "param": err.get("param"), "code": err.get("code")}
        return orjson.dumps({"error": shaped})
    if isinstance(err, str):
        return orjson.dumps(_openai_error(err, etype))
    if isinstance(data, dict) and data.get("detail"):
        detail = data["detail"]
        return orjson.dumps(
            _openai_error(detail if isinstance(detail, str) else orjson.dumps(detail).decode(), etype)
        )
    if isinstance(data, dict) and isinstance(data.get("message"), str):  # a stream's error event
        return orjson.dumps(_openai_error(data["message"], etype, data.get("code"), data.get("param")))
    text = body[:2000].decode("utf-8", "replace").strip() or f"upstream returned HTTP {status}"
    return orjson.dumps(_openai_error(text, etype))


def _openai_error(message: str, etype: str, code: Any = None, param: Any = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


# -- streams ----------------------------------------------------------------------------------------------


class ResponsesToChatStream(ChatChunkStream):
    """Incrementally convert Responses API SSE bytes into OpenAI chat completion chunks (SSE bytes).

    ``feed`` may be called with any slicing of the upstream bytes; the output does not depend on it.
    ``completed`` turns true at ``response.completed`` (or ``response.incomplete``), the only place
    ``[DONE]`` is sent; a failed response or an ``error`` event ends the stream with an OpenAI error chunk,
    and so does ``finish`` for a stream that was cut.
    """

    def __init__(self, *, model: str, include_usage: bool, created: int | None = None) -> None:
        super().__init__(model=model, include_usage=include_usage, created=created)
        self.usage: dict[str, Any] | None = None  # the final response's Responses usage
        self._tools: dict[Any, int] = {}  # output_index and item_id → tool call index
        self._silent: set[int] = set()  # tool calls whose arguments have not been sent yet
        self._calls = 0  # tool calls announced
        self._started = False  # role chunk sent

    def _cut_error(self, message: str) -> dict[str, Any]:
        return _openai_error(message, "api_error", "server_error")

    # -- internals

    def _convert(self, events: list[tuple[str | None, bytes]]) -> bytes:
        if not events:
            return b""
        out: list[bytes] = []
        for name, data in events:
            if name in _IGNORED_EVENTS or self.completed or self.errored:
                continue
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue  # a keep-alive, "[DONE]" or a torn frame carries nothing to convert
            if isinstance(payload, dict):
                try:
                    self._event(payload.get("type") or name, payload, out)
                except (AttributeError, TypeError):  # a malformed event: skipped, never raised
                    continue
        return b"".join(out)

    def _event(self, kind: Any, ev: dict[str, Any], out: list[bytes]) -> None:
        if kind == "response.output_text.delta":
            self._start(None, out)
            out.append(self._chunk(orjson.dumps({"content": ev.get("delta") or ""})))
        elif kind == "response.function_call_arguments.delta":
            self._arguments(self._tool_index(ev), ev.get("delta"), out)
        elif kind in _REASONING_DELTAS:
            self._start(None, out)
            out.append(self._chunk(orjson.dumps({"reasoning_content": ev.get("delta") or ""})))
        elif kind == "response.refusal.delta":
            self._start(None, out)
            out.append(self._chunk(orjson.dumps({"refusal": ev.get("delta") or ""})))
        elif kind == "response.output_item.added":
            self._item(ev, out)
        elif kind == "response.function_call_arguments.done":
            self._arguments(self._tool_index(ev), ev.get("arguments"), out, silent_only=True)
        elif kind == "response.output_item.done":
            self._item(ev, out, done=True)
        elif kind in ("response.created", "response.in_progress"):
            self._start(ev.get("response"), out)
        elif kind in ("response.completed", "response.incomplete"):
            self._complete(ev.get("response") or {}, out)
        elif kind == "response.failed":
            response = ev.get("response") or {}
            self.usage = response.get("usage") if isinstance(response.get("usage"), dict) else self.usage
            error = response.get("error") if isinstance(response.get("error"), dict) else {}
            self._error(error.get("message") or "the response failed", error.get("code"), out)
        elif kind == "error":
            nested = ev.get("error") if isinstance(ev.get("error"), dict) else ev
            self._error(nested.get("message") or "upstream error", nested.get("code"), out)

    def _start(self, response: Any, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        if isinstance(response, dict) and response.get("id"):
            if isinstance(response.get("created_at"), int):
                self.created = response["created_at"]
            self._set_id("chatcmpl-" + str(response["id"]))
        out.append(self._chunk(b'{"role":"assistant","content":""}'))

    def _item(self, ev: dict[str, Any], out: list[bytes], *, done: bool = False) -> None:
        item = ev.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return
        known = self._tool_index(ev, item)
        if known is not None:
            if done:  # arguments that never came as deltas come whole here
                self._arguments(known, item.get("arguments"), out, silent_only=True)
            return
        self._start(None, out)
        index = self._calls
        self._calls += 1
        self._tools[ev.get("output_index", -1)] = index
        if item.get("id"):
            self._tools[item["id"]] = index
        arguments = item.get("arguments") or ""
        if not arguments:
            self._silent.add(index)
        fn = {"name": item.get("name") or "", "arguments": arguments}
        call = {"index": index, "id": item.get("call_id") or item.get("id") or "", "type": "function"}
        call["function"] = fn
        out.append(self._chunk(orjson.dumps({"tool_calls": [call]})))

    def _tool_index(self, ev: dict[str, Any], item: dict[str, Any] | None = None) -> int | None:
        index = self._tools.get(ev.get("output_index", -1))
        if index is None:
            index = self._tools.get(ev.get("item_id") or (item or {}).get("id"))
        return index

    def _arguments(
        self, index: int | None, arguments: Any, out: list[bytes], silent_only: bool = False
    ) -> None:
        """An arguments delta; with `silent_only`, whole arguments of a call that had no delta yet."""
        if index is None or not isinstance(arguments, str) or not arguments:
            return
        if silent_only and index not in self._silent:
            return
        self._silent.discard(index)
        call = {"index": index, "function": {"arguments": arguments}}
        out.append(self._chunk(orjson.dumps({"tool_calls": [call]})))

    def _complete(self, response: dict[str, Any], out: list[bytes]) -> None:
        self._start(None, out)
        if isinstance(response.get("usage"), dict):
            self.usage = response["usage"]
        reason = _finish_reason(response.get("status"), response.get("incomplete_details"), self._calls > 0)
        out.append(self._chunk(b"{}", reason.encode()))
        self.completed = True
        if self.include_usage:
            usage = orjson.dumps(responses_usage_to_chat(self.usage or {}))
            out.append(b"data: " + self._head + b',"choices":[],"usage":' + usage + b"}\n\n")
        out.append(b"data: [DONE]\n\n")

    def _error(self, message: str, code: Any, out: list[bytes]) -> None:
        self.errored = True
        out.append(sse_data(_openai_error(message, "api_error", code or "server_error")))
