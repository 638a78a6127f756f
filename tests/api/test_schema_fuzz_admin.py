"""Every /api operation fuzzed with the first admin's token (see schema_fuzz.py)."""

from __future__ import annotations

from ..support import RelayServer
from .schema_fuzz import fuzz_every_operation, fuzz_relay  # noqa: F401 - the fixture this module uses


def test_api_fuzz_as_admin(fuzz_relay: RelayServer) -> None:  # noqa: F811
    fuzz_every_operation(fuzz_relay, "admin")
