"""An OpenAI chat body → a Gemini ``generateContent`` body: the relay's ``/gemini/v1/chat`` endpoint, and
the last step of serving any other client from a Gemini account (chat is the hub of the conversions).

On ``/gemini/v1/chat`` answers stay in Gemini's native shape (the relay's contract); the usage of a Gemini
answer or stream chunk is normalised by ``gemini_usage`` for billing. Tool calls carry their chat id as
the Gemini call id, and a tool result names the function its call named (Gemini matches by name).
Lost: image URLs (Gemini cannot fetch them; dropped, as this endpoint always did), reasoning effort
beyond a thinking budget, `n`, `logprobs`.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["chat_request_to_gemini", "gemini_usage"]

_ROLES = {"user": "user", "assistant": "model", "model": "model"}
# reasoning_effort → thinking budget (tokens); "none"/"minimal" turn thinking off where the model allows.
_THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
# OpenAI-like field → generationConfig field, copied when it is a number.
_NUMBER_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def chat_request_to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """Build a Gemini ``generateContent`` body. ``model`` and ``stream`` are the caller's (URL) business."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        parts = _parts(msg.get("content"))
        if role == "assistant" and msg.get("tool_calls"):
            parts += _function_calls(msg["tool_calls"], names)
        elif role == "tool":  # the answer to a function call (one without a call id answers nothing)
            parts = [_function_response(msg, names)] if msg.get("tool_call_id") else []
            role = "user"
        if not parts:
            continue  # Gemini rejects a content without parts
        if role in ("system", "developer"):
            system.extend(parts)
        elif role in _ROLES:
            _append(contents, _ROLES[role], parts)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = [{"functionDeclarations": tools}]
        choice = _tool_config(body.get("tool_choice"))
        if choice:
            out["toolConfig"] = {"functionCallingConfig": choice}
    return out


def _function_calls(calls: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    parts = []
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        arguments = fn.get("arguments")
        try:
            args = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
        except orjson.JSONDecodeError:
            args = {"_raw_arguments": arguments}
        name = str(fn.get("name") or "")
        names[str(call.get("id") or "")] = name
        function_call: dict[str, Any] = {
            "name": name,
            "args": args if isinstance(args, dict) else {"value": args},
        }
        if call.get("id"):
            function_call["id"] = call["id"]
        parts.append({"functionCall": function_call})
    return parts


def _function_response(msg: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    call_id = str(msg.get("tool_call_id") or "")
    answer: dict[str, Any] = {"name": names.get(call_id, call_id), "response": {"output": content or ""}}
    if call_id:
        answer["id"] = call_id
    return {"functionResponse": answer}


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools if isinstance(tools, list) else ():
        fn = (
            tool.get("function")
            if isinstance(tool, dict) and tool.get("type", "function") == "function"
            else None
        )
        if isinstance(fn, dict) and fn.get("name"):
            decl: dict[str, Any] = {"name": fn["name"]}
            if fn.get("description"):
                decl["description"] = fn["description"]
            if isinstance(fn.get("parameters"), dict) and fn["parameters"].get("properties"):
                decl["parametersJsonSchema"] = fn["parameters"]
            out.append(decl)
    return out


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice == "none":
        return {"mode": "NONE"}
    if choice == "required":
        return {"mode": "ANY"}
    if choice == "auto":
        return {"mode": "AUTO"}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and fn.get("name"):
        return {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}
    return None


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    # Consecutive turns of one role become one content: Gemini expects user and model to alternate.
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        return []
    parts = []
    for item in content:
        if isinstance(item, str):
            part: dict[str, Any] | None = {"text": item} if item else None
        elif isinstance(item, dict):
            part = _part(item)
        else:
            part = None
        if part is not None:
            parts.append(part)
    return parts


def _part(item: dict[str, Any]) -> dict[str, Any] | None:
    kind = item.get("type", "text")
    if kind == "text":
        text = item.get("text")
        return {"text": text} if isinstance(text, str) and text else None
    if kind == "image_url":
        image = item.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _inline_image(url) if isinstance(url, str) else None
    return None


def _inline_image(url: str) -> dict[str, Any] | None:
    # Only data: URLs can be inlined; Gemini cannot fetch arbitrary http URLs itself.
    header, sep, data = url.partition(",")
    if not url.startswith("data:") or not sep or not header.endswith(";base64"):
        return None
    return {"inlineData": {"mimeType": header[5:-7], "data": data}}


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        config["maxOutputTokens"] = max_tokens
    for src, dst in _NUMBER_FIELDS:
        value = body.get(src)
        if isinstance(value, int | float) and not isinstance(value, bool):
            config[dst] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list):
        sequences = [s for s in stop if isinstance(s, str) and s]
        if sequences:
            config["stopSequences"] = sequences
    _response_format(body.get("response_format"), config)
    budget = _THINKING_BUDGETS.get(body.get("reasoning_effort"))  # type: ignore[arg-type]
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    return config


def _response_format(fmt: Any, config: dict[str, Any]) -> None:
    if not isinstance(fmt, dict):
        return
    if fmt.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif fmt.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema


def gemini_usage(obj: dict[str, Any]) -> dict[str, int]:
    """Normalised usage (Anthropic semantics) of a Gemini response or stream chunk.

    Gemini's prompt count includes cached tokens and its candidates count excludes thinking, so input is
    prompt - cached (+ tool-use prompt tokens, which Gemini counts apart and bills as input) and output is
    candidates + thoughts. Gemini reports no cache writes. Accepts a response or its ``usageMetadata``.
    """
    meta = obj.get("usageMetadata", obj)
    if not isinstance(meta, dict):
        meta = {}
    cached = _count(meta, "cachedContentTokenCount")
    prompt = _count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount")
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": _count(meta, "candidatesTokenCount") + _count(meta, "thoughtsTokenCount"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def _count(meta: dict[str, Any], key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) else 0
