"""The one exception every request translator raises for what its target cannot express.

A request that asks for something the upstream protocol has no way to say, and whose answer would be
different without it, is refused (the relay answers 400 in the client's own error shape) rather than
silently changed.
"""

from __future__ import annotations


class Unconvertible(ValueError):
    """A request the chosen upstream protocol cannot serve as asked (the client's 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
