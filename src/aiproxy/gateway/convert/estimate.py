"""A local token estimate for token-counting requests no upstream of the client's family can answer.

Counting endpoints (Claude's ``count_tokens``, Gemini's ``countTokens``) exist only on their own
vendor; when the request would be served by an account of another family, the relay answers this
estimate itself (flagged ``estimated`` in the request log) rather than refusing a client that merely
wants to know how full its context is. About four characters of text per token; an image or a file
counts a flat amount, as vendors bill them by size rather than by their base64 length.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
MEDIA_TOKENS = 1000  # an image or a document, whatever its encoded size
_MEDIA_KEYS = frozenset({"data", "image_url", "file_data", "inlineData", "inline_data", "source"})


_NOT_CONTENT = frozenset({"model", "stream"})  # top-level fields the model never reads


def estimate_tokens(body: Any) -> int:
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in _NOT_CONTENT}
    chars, media = _walk(body)
    return max(1, chars // CHARS_PER_TOKEN + media * MEDIA_TOKENS)


def _walk(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        return len(value), 0
    chars = media = 0
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _MEDIA_KEYS and not isinstance(item, str | int | float) and _is_media(item):
                media += 1
                continue
            if key in ("data", "file_data", "image_url") and isinstance(item, str) and len(item) > 256:
                media += 1
                continue
            c, m = _walk(item)
            chars, media = chars + c, media + m
    elif isinstance(value, list):
        for item in value:
            c, m = _walk(item)
            chars, media = chars + c, media + m
    return chars, media


def _is_media(item: Any) -> bool:
    return isinstance(item, dict) and any(k in item for k in ("data", "url", "mimeType", "media_type"))
