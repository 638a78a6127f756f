"""A Responses WebSocket's history (what the HTTP bridge replays) and its error frames."""

from __future__ import annotations

from typing import Any

import orjson

from aiproxy.gateway.socket_bridge import HISTORY_KEPT, Conversation, input_items
from aiproxy.gateway.websocket import _socket_error, error_frame


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def answer(
    conversation: Conversation, rid: str, text: str, *, from_done_items: bool = False
) -> dict[str, Any]:
    """The events of one response as they pass to the client; returns its output item."""
    item = {"id": f"msg_{rid}", "type": "message", "role": "assistant", "content": [{"text": text}]}
    created = {"type": "response.created", "response": {"id": rid, "output": []}}
    done = {"type": "response.output_item.done", "item": item}
    completed = {
        "type": "response.completed",
        "response": {"id": rid, "output": [] if from_done_items else [item]},
    }
    for event in (created, done, completed):
        kind = conversation.observe(event["type"], orjson.dumps(event))
        assert kind == event["type"]
    return item


def test_a_string_input_is_one_user_message() -> None:
    assert input_items("hi") == [user("hi")]
    assert input_items([user("a")]) == [user("a")]
    assert input_items(None) == []


def test_a_continued_response_is_written_out_with_its_history() -> None:
    conversation = Conversation(gateway=None)  # type: ignore[arg-type]
    first = {"input": "one", "stream": True}
    conversation.begin(first)
    reply = answer(conversation, "r1", "first answer")
    assert conversation.replayed(first) is first  # nothing to continue: sent as it is
    second = {"input": [user("two")], "previous_response_id": "r1", "generate": True}
    conversation.begin(second)
    replayed = conversation.replayed(second)
    without_id = {k: v for k, v in reply.items() if k != "id"}
    assert replayed == {"input": [user("one"), without_id, user("two")], "generate": True}
    answer(conversation, "r2", "second answer", from_done_items=True)  # output taken from the done items
    third = conversation.replayed({"input": "three", "previous_response_id": "r2"})
    assert len(third["input"]) == 5 and third["input"][-1] == user("three")
    unknown = {"input": "x", "previous_response_id": "resp_elsewhere"}
    assert conversation.replayed(unknown) is unknown  # not this socket's: the upstream's business


def test_only_the_latest_responses_are_kept() -> None:
    conversation = Conversation(gateway=None)  # type: ignore[arg-type]
    for n in range(HISTORY_KEPT + 2):
        conversation.begin({"input": f"turn {n}"})
        answer(conversation, f"r{n}", "ok")
    assert "previous_response_id" in conversation.replayed({"input": "x", "previous_response_id": "r0"})
    kept = conversation.replayed({"input": "x", "previous_response_id": f"r{HISTORY_KEPT + 1}"})
    assert "previous_response_id" not in kept


def test_error_frames_have_the_websocket_shape() -> None:
    refused = orjson.loads(
        error_frame(429, b'{"error":{"message":"slow down","type":"rate_limit_exceeded"}}')
    )
    assert refused == {
        "type": "error",
        "status": 429,
        "error": {"type": "rate_limit_exceeded", "code": None, "message": "slow down", "param": None},
    }
    html = orjson.loads(error_frame(502, b"<html>bad gateway</html>"))
    assert html["error"]["message"] == "<html>bad gateway</html>" and html["status"] == 502
    cut = b'{"type":"error","code":"stream_incomplete","message":"cut","param":null,"sequence_number":9}'
    assert orjson.loads(_socket_error(cut)) == {
        "type": "error",
        "error": {"type": "server_error", "code": "stream_incomplete", "message": "cut", "param": None},
        "sequence_number": 9,
    }
    nested = b'{"type":"error","error":{"type":"x","message":"y"}}'
    assert _socket_error(nested) == nested
