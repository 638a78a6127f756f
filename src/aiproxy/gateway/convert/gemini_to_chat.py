"""Gemini ``generateContent`` request → OpenAI Chat Completions request (the hub of the conversions).

The first half of serving a Gemini client (google-genai, Gemini CLI) from another family. Kept: system
instruction, text, inline images and PDFs, image URLs (``fileData`` with an http(s) URI), function
declarations, function calling mode, function calls and responses, sampling, stop sequences, thinking
(as a reasoning effort), JSON output. Function responses are matched to their calls by id, else by name
in order. Lost without changing the answer: thought parts and signatures sent back (only Gemini can read
them), `safetySettings`, `cachedContent` hints, `topK`. Refused (the client's 400): several candidates,
Google's hosted tools (search, code execution, URL context), files by Files API URI, audio and video.
"""

from __future__ import annotations

from typing import Any

import orjson

from .refusal import Unconvertible

__all__ = ["gemini_request_to_chat"]

_ROLES = {"user": "user", "model": "assistant", None: "user", "function": "user"}
_HOSTED_TOOLS = ("googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext", "google_search")


def gemini_request_to_chat(body: dict[str, Any], *, model: str, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system:
        text = "".join(p.get("text") or "" for p in _parts_of(system) if isinstance(p, dict))
        if text:
            messages.append({"role": "system", "content": text})
    pending: list[tuple[str, str]] = []  # (call id, function name) of calls not answered yet
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list):
        raise Unconvertible("contents", "must be a list of contents")
    for i, content in enumerate(contents):
        _content(content, f"contents[{i}]", messages, pending)
    out: dict[str, Any] = {"model": model, "messages": messages}
    _config(body.get("generationConfig") or body.get("generation_config") or {}, out)
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("toolConfig") or body.get("tool_config"))
        if choice is not None:
            out["tool_choice"] = choice
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _parts_of(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"text": content}]
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def _content(content: Any, where: str, out: list[dict[str, Any]], pending: list[tuple[str, str]]) -> None:
    if not isinstance(content, dict):
        raise Unconvertible(where, "must be an object")
    role = _ROLES.get(content.get("role"))
    if role is None:
        raise Unconvertible(f"{where}.role", f"role {content.get('role')!r} is not supported")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, part in enumerate(_parts_of(content)):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise Unconvertible(at, "must be an object")
        if part.get("thought"):
            continue  # the model's own thoughts, sent back: only Gemini reads them
        if isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            call_id = call.get("id") or f"call_{len(pending)}_{call.get('name') or ''}"
            pending.append((call_id, call.get("name") or ""))
            arguments = orjson.dumps(call.get("args") or {}).decode()
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call.get("name") or "", "arguments": arguments},
                }
            )
        elif isinstance(part.get("functionResponse"), dict):
            answer = part["functionResponse"]
            out.append(
                {"role": "tool", "tool_call_id": _answered(answer, pending), "content": _result_text(answer)}
            )
        elif isinstance(part.get("text"), str):
            if part["text"]:
                parts.append({"type": "text", "text": part["text"]})
        elif isinstance(part.get("inlineData") or part.get("inline_data"), dict):
            parts.append(_inline(part.get("inlineData") or part.get("inline_data"), at))
        elif isinstance(part.get("fileData") or part.get("file_data"), dict):
            parts.append(_file(part.get("fileData") or part.get("file_data"), at))
        else:
            raise Unconvertible(at, "this kind of part is not supported by this account")
    if role == "assistant":
        if any(p["type"] != "text" for p in parts):
            raise Unconvertible(where, "model turns carry text and function calls only")
        if parts or calls:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(p["text"] for p in parts) or None,
            }
            if calls:
                message["tool_calls"] = calls
            out.append(message)
    elif parts:
        out.append({"role": "user", "content": parts})


def _answered(answer: dict[str, Any], pending: list[tuple[str, str]]) -> str:
    """The call id a function response answers: its own id, else the oldest open call of that name."""
    wanted = answer.get("id")
    for k, (call_id, name) in enumerate(pending):
        if (wanted and call_id == wanted) or (not wanted and name == answer.get("name")):
            del pending[k]
            return call_id
    return str(wanted or answer.get("name") or "")


def _result_text(answer: dict[str, Any]) -> str:
    response = answer.get("response")
    if (
        isinstance(response, dict)
        and set(response) <= {"output", "content"}
        and isinstance(response.get("output", response.get("content")), str)
    ):
        return response.get("output", response.get("content"))
    return orjson.dumps(response if response is not None else {}).decode()


def _inline(data: dict[str, Any], where: str) -> dict[str, Any]:
    mime = str(data.get("mimeType") or data.get("mime_type") or "")
    url = f"data:{mime};base64,{data.get('data') or ''}"
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    if mime == "application/pdf":
        return {"type": "file", "file": {"filename": "document.pdf", "file_data": url}}
    raise Unconvertible(where, f"inline data of type {mime!r} is not supported by this account")


def _file(data: dict[str, Any], where: str) -> dict[str, Any]:
    uri = str(data.get("fileUri") or data.get("file_uri") or "")
    mime = str(data.get("mimeType") or data.get("mime_type") or "image/")
    if uri.startswith(("http://", "https://")) and mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": uri}}
    raise Unconvertible(where, "files by URI are supported for images at http(s) URLs only")


def _config(config: dict[str, Any], out: dict[str, Any]) -> None:
    count = config.get("candidateCount")
    if isinstance(count, int) and count > 1:
        raise Unconvertible("generationConfig.candidateCount", "this account answers with one candidate")
    if isinstance(config.get("maxOutputTokens"), int):
        out["max_completion_tokens"] = config["maxOutputTokens"]
    for src, dst in (("temperature", "temperature"), ("topP", "top_p"), ("seed", "seed")):
        if isinstance(config.get(src), int | float):
            out[dst] = config[src]
    for src, dst in (("presencePenalty", "presence_penalty"), ("frequencyPenalty", "frequency_penalty")):
        if config.get(src):
            out[dst] = config[src]
    if config.get("stopSequences"):
        out["stop"] = config["stopSequences"]
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if isinstance(schema, dict):
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": _lower_types(schema)},
        }
    elif config.get("responseMimeType") == "application/json":
        out["response_format"] = {"type": "json_object"}
    thinking = config.get("thinkingConfig")
    if isinstance(thinking, dict):
        level = str(thinking.get("thinkingLevel") or "").lower()
        budget = thinking.get("thinkingBudget")
        if level in ("low", "medium", "high"):
            out["reasoning_effort"] = level
        elif isinstance(budget, int) and budget > 0:
            out["reasoning_effort"] = "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def _tools(tools: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise Unconvertible(f"tools[{i}]", "must be an object")
        hosted = [name for name in _HOSTED_TOOLS if name in tool]
        if hosted:
            raise Unconvertible(f"tools[{i}].{hosted[0]}", "Google's hosted tools need a Gemini account")
        for j, decl in enumerate(tool.get("functionDeclarations") or tool.get("function_declarations") or ()):
            if not isinstance(decl, dict) or not decl.get("name"):
                raise Unconvertible(f"tools[{i}].functionDeclarations[{j}]", "must have a name")
            fn: dict[str, Any] = {"name": decl["name"]}
            if decl.get("description"):
                fn["description"] = decl["description"]
            schema = decl.get("parametersJsonSchema") or decl.get("parameters")
            fn["parameters"] = (
                _lower_types(schema) if isinstance(schema, dict) else {"type": "object", "properties": {}}
            )
            out.append({"type": "function", "function": fn})
    return out


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI schemas may spell types in capitals (STRING, OBJECT); JSON Schema does not."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _tool_choice(config: Any) -> Any:
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return None
    mode = str(calling.get("mode") or "").upper()
    names = calling.get("allowedFunctionNames") or []
    if mode == "NONE":
        return "none"
    if mode in ("ANY", "VALIDATED"):
        if len(names) == 1:
            return {"type": "function", "function": {"name": names[0]}}
        return "required"
    return "auto" if mode == "AUTO" else None
