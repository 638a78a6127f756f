"""Image captchas: 4 characters drawn into a PNG, answer kept in shared state, single use."""

from __future__ import annotations

import base64
import secrets

from captcha.image import ImageCaptcha

# No 0/O, 1/I/L: characters people misread on a noisy image.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_LENGTH = 4
_generator = ImageCaptcha(width=160, height=60)


def new_challenge() -> tuple[str, str, str]:
    """Returns (captcha_id, answer, PNG data URI)."""
    answer = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
    png = _generator.generate(answer, format="png").getvalue()
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    return secrets.token_urlsafe(16), answer, data_uri


def answers_match(expected: str, given: str) -> bool:
    return secrets.compare_digest(expected.upper(), given.strip().upper())
