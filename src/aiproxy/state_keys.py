"""Names of the shared-state keys that more than one room reads or writes.

The gateway takes concurrency slots under these names; the admin API shows and resets them.
"""

from __future__ import annotations

# Prefixes of the slot keys below, for the admin's scans (the functions spell them out: hot path).
USER_SLOTS = "slots:user:"
ACCOUNT_SLOTS = "slots:account:"


def user_slots(user_id: int) -> str:
    return f"slots:user:{user_id}"


def account_slots(account_id: int) -> str:
    return f"slots:account:{account_id}"


def login_attempts(ip: str) -> str:
    return f"ratelimit:login:{ip}"


def captcha_requests(ip: str) -> str:
    return f"ratelimit:captcha:{ip}"


def captcha_answer(captcha_id: str) -> str:
    return f"captcha:{captcha_id}"
