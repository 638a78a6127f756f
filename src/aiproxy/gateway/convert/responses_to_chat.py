"""OpenAI Responses API request → OpenAI Chat Completions request (the hub of the conversions).

The first half of serving a Responses client (Codex included) from another family. Kept: instructions
and system/developer messages, text, images (URLs and data URLs), inline files, function tools, tool
choice, function calls and their outputs, sampling, reasoning effort, structured output.
Lost without changing the answer: reasoning items sent back (encrypted for a Responses upstream only;
the other families cannot read them), `include`, `store`, `truncation`, `prompt_cache_key`.
Hosted tools the other families do not have (web search, and Codex's tool namespaces are flattened to
their functions) are left out of the request: the model then answers without them. Refused (the client's
400): state kept by a Responses upstream (`previous_response_id`, `conversation`, stored prompts,
background responses), other hosted tools, items the other families cannot express.
"""

from __future__ import annotations

from typing import Any

from .refusal import Unconvertible

__all__ = ["DROPPED_TOOLS", "responses_request_to_chat"]

# Hosted tools a model can do without: left out (and flagged in the request log by the relay).
DROPPED_TOOLS = frozenset({"web_search", "web_search_preview", "web_search_preview_2025_03_11"})
_STATEFUL = ("previous_response_id", "conversation", "prompt")
_SKIPPED_ITEMS = frozenset({"reasoning"})


def responses_request_to_chat(body: dict[str, Any], *, model: str, stream: bool) -> dict[str, Any]:
    for name in _STATEFUL:
        if body.get(name):
            raise Unconvertible(name, "state kept by a Responses API upstream; this account cannot serve it")
    if body.get("background"):
        raise Unconvertible("background", "background responses need a Responses API account")
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            _item(item, f"input[{i}]", messages)
    elif raw is not None:
        raise Unconvertible("input", "must be a string or a list of items")
    out: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(body.get("max_output_tokens"), int):
        out["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "user", "safety_identifier"):
        if body.get(name) is not None:
            out[name] = body[name]
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        if body.get("tool_choice") is not None:
            out["tool_choice"] = _tool_choice(body["tool_choice"])
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        out["reasoning_effort"] = reasoning["effort"]
    fmt = _format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def dropped_tools(body: dict[str, Any]) -> bool:
    """Whether the request named a hosted tool the conversion leaves out (for the request log)."""
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, dict) and t.get("type") in DROPPED_TOOLS for t in tools
    )


def _item(item: Any, where: str, out: list[dict[str, Any]]) -> None:
    if not isinstance(item, dict):
        raise Unconvertible(where, "must be an object")
    kind = item.get("type") or "message"
    if kind == "message":
        _message(item, where, out)
    elif kind == "function_call":
        call = {"id": item.get("call_id") or item.get("id") or "", "type": "function"}
        call["function"] = {"name": item.get("name") or "", "arguments": item.get("arguments") or "{}"}
        last = out[-1] if out else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            out.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = "".join(p.get("text") or "" for p in output if isinstance(p, dict))
        out.append({"role": "tool", "tool_call_id": item.get("call_id") or "", "content": output or ""})
    elif kind not in _SKIPPED_ITEMS:
        raise Unconvertible(f"{where}.type", f"input item type {kind!r} is not supported by this account")


def _message(item: dict[str, Any], where: str, out: list[dict[str, Any]]) -> None:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise Unconvertible(f"{where}.role", f"role {role!r} is not supported")
    content = item.get("content")
    if isinstance(content, str):
        out.append({"role": role, "content": content})
        return
    if not isinstance(content, list):
        raise Unconvertible(f"{where}.content", "must be a string or a list of content parts")
    parts = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if role in ("assistant", "system", "developer"):  # text only in chat
        if any(p["type"] != "text" for p in parts):
            raise Unconvertible(f"{where}.content", f"{role} messages carry text only")
        out.append({"role": role, "content": "".join(p["text"] for p in parts)})
    elif parts:
        out.append({"role": "user", "content": parts})


def _part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise Unconvertible(where, "images by file id need a Responses API account")
        image = {"url": url}
        if part.get("detail") in ("low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if not part.get("file_data"):
            raise Unconvertible(where, "files by id or URL need a Responses API account")
        file = {"file_data": part["file_data"], "filename": part.get("filename") or "file"}
        return {"type": "file", "file": file}
    raise Unconvertible(where, f"content part type {kind!r} is not supported by this account")


def _tools(tools: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or ()):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            out.append(_function(tool, f"tools[{i}]"))
        elif kind == "namespace":  # a group of functions (Codex): its functions, flattened
            for j, inner in enumerate(tool.get("tools") or ()):
                if isinstance(inner, dict) and inner.get("type") == "function":
                    out.append(_function(inner, f"tools[{i}].tools[{j}]"))
                else:
                    raise Unconvertible(f"tools[{i}].tools[{j}]", "only functions are supported here")
        elif kind not in DROPPED_TOOLS:
            raise Unconvertible(f"tools[{i}]", f"tool type {kind!r} needs a Responses API account")
    return out


def _function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise Unconvertible(f"{where}.name", "required")
    fn: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if tool.get("strict") is True:
        fn["strict"] = True
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind == "allowed_tools":
        tools = [
            {"type": "function", "function": {"name": t["name"]}}
            for t in choice.get("tools") or ()
            if isinstance(t, dict) and t.get("type") == "function" and t.get("name")
        ]
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": choice.get("mode") or "auto", "tools": tools},
        }
    raise Unconvertible(
        "tool_choice", "only auto, none, required and functions are supported by this account"
    )


def _format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {"name": fmt.get("name") or "output", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise Unconvertible("text.format", f"type {fmt['type']!r} is not supported")
