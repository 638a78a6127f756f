"""Anthropic Messages request → OpenAI Chat Completions request (the hub of the conversions).

The first half of serving a Claude client (Claude Code included) from another family. Kept: system
prompts, text, images (base64 and URLs), PDFs (as file parts), tools, tool choice, tool calls and
results (images inside a tool result follow as a user message: chat tool messages carry text only),
sampling, stop sequences, thinking (as a reasoning effort), structured output.
Lost without changing the answer: prompt-caching marks (`cache_control`), a thinking block sent back with
its signature (only Claude can check it), `metadata`, `context_management` (server-side context
editing), `top_k`. Refused (the client's 400): server tools (web search, code execution, …), MCP
servers, containers, document sources other than inline PDFs.
"""

from __future__ import annotations

from typing import Any

import orjson

from .refusal import Unconvertible

__all__ = ["claude_request_to_chat"]

# Thinking budget (tokens) → reasoning effort: the smallest effort whose budget covers it.
_EFFORTS = ((2048, "low"), (8192, "medium"))
_REFUSED_FIELDS = ("mcp_servers", "container")


def claude_request_to_chat(body: dict[str, Any], *, model: str, stream: bool) -> dict[str, Any]:
    for name in _REFUSED_FIELDS:
        if body.get(name):
            raise Unconvertible(name, "only a Claude account can serve it")
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    raw = body.get("messages")
    if not isinstance(raw, list):
        raise Unconvertible("messages", "must be a list of messages")
    for i, msg in enumerate(raw):
        _message(msg, f"messages[{i}]", messages)
    out: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(body.get("max_tokens"), int):
        out["max_completion_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float):
            out[name] = body[name]
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        out["stop"] = stop
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    _tool_choice(body.get("tool_choice"), out)
    effort = _effort(body.get("thinking"), body.get("output_config"))
    if effort:
        out["reasoning_effort"] = effort
    fmt = _output_format(body)
    if fmt:
        out["response_format"] = fmt
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(
            b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""


def _message(msg: Any, where: str, out: list[dict[str, Any]]) -> None:
    if not isinstance(msg, dict):
        raise Unconvertible(where, "must be an object")
    role, content = msg.get("role"), msg.get("content")
    if role == "system":  # Claude Code puts reminders in system messages between the turns
        out.append({"role": "system", "content": _system_text(content)})
        return
    if role not in ("user", "assistant"):
        raise Unconvertible(f"{where}.role", f"role {role!r} is not supported")
    if isinstance(content, str):
        out.append({"role": role, "content": content})
        return
    if not isinstance(content, list):
        raise Unconvertible(f"{where}.content", "must be a string or a list of content blocks")
    if role == "assistant":
        _assistant(content, where, out)
    else:
        _user(content, where, out)


def _user(blocks: list[Any], where: str, out: list[dict[str, Any]]) -> None:
    """Tool results first (chat wants them right after the assistant's calls), then the rest."""
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            texts, images = _tool_result(block, at)
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": texts})
            parts.extend(images)
        else:
            part = _part(block, at)
            if part is not None:
                parts.append(part)
    if parts:
        out.append({"role": "user", "content": parts})


def _tool_result(block: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, item in enumerate(content):
            part = _part(item, f"{where}.content[{k}]")
            if part is None:
                continue
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
    text = "\n".join(texts)
    if block.get("is_error"):  # chat has no error flag on a tool result: the model reads it in the text
        text = f"Error: {text}" if text else "Error"
    return text, images


def _part(block: Any, where: str) -> dict[str, Any] | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block.get("source"), where, "image")}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return {"type": "text", "text": source["data"]}
        url = _source_url(source, where, "document")
        if not url.startswith("data:application/pdf;"):
            raise Unconvertible(where, "only inline PDF documents can be sent to this account")
        return {"type": "file", "file": {"filename": block.get("title") or "document.pdf", "file_data": url}}
    if kind in ("thinking", "redacted_thinking"):
        return None
    raise Unconvertible(where, f"content block type {kind!r} is not supported by this account")


def _source_url(source: Any, where: str, what: str) -> str:
    if isinstance(source, dict) and source.get("type") == "base64":
        return f"data:{source.get('media_type') or ''};base64,{source.get('data') or ''}"
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise Unconvertible(
        f"{where}.source", f"{what} sources other than base64 data and URLs are not supported"
    )


def _assistant(blocks: list[Any], where: str, out: list[dict[str, Any]]) -> None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") if block.get("input") is not None else {}).decode()
            fn = {"name": block.get("name") or "", "arguments": arguments}
            calls.append({"id": block.get("id") or "", "type": "function", "function": fn})
        elif kind not in ("thinking", "redacted_thinking"):
            # A thinking block's signature only means something to Claude: the text alone is dropped too.
            raise Unconvertible(f"{where}.content[{j}]", f"content block type {kind!r} is not supported")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if texts or calls:
        out.append(message)


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or not tool.get("name"):
        raise Unconvertible(where, "must be a tool with a name")
    if tool.get("type") not in (None, "custom"):
        raise Unconvertible(where, f"server tool {tool['type']!r} is only served by Claude accounts")
    fn: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name") or ""}}
    if choice.get("disable_parallel_tool_use") and "tools" in out:
        out["parallel_tool_calls"] = False


def _effort(thinking: Any, output_config: Any) -> str | None:
    """Claude's thinking as a reasoning effort; an explicit ``output_config.effort`` wins."""
    if not isinstance(thinking, dict) or thinking.get("type") == "disabled":
        return None
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort in ("low", "medium", "high"):
        return effort
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"  # adaptive thinking: the model decides, as with a medium effort
    return next((name for limit, name in _EFFORTS if budget <= limit), "high")


def _output_format(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.get("schema") or {}}}
