"""The caller's address, the same way for the console API and the proxy endpoints."""

from __future__ import annotations


def client_address(peer: str, forwarded_for: str | None, real_ip: str | None, *, trust_proxy: bool) -> str:
    """The peer address, or what a trusted reverse proxy says the client was.

    Only the right-most X-Forwarded-For entry is used: it is the one our own reverse proxy
    appended; entries before it come from the client and can be forged.
    """
    if trust_proxy:
        if forwarded_for:
            return forwarded_for.split(",")[-1].strip()
        if real_ip:
            return real_ip.strip()
    return peer
