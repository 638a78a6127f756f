"""Schema-driven fuzzing of every /api operation against a real relay, on both storage backends.

schemathesis reads the live /api/openapi.json and generates valid and invalid input for each
operation (path, query and body), with an admin token (`test_schema_fuzz_admin.py`) and with a
user token (`test_schema_fuzz_user.py`: two files, so two test workers can share the work). Every
answer must be a status the schema declares for that operation, and never a 5xx.

The relay is each test module's own: fuzzing creates, changes and deletes rows at random (error rules
that match every upstream error, disabled models, a default proxy, …), which would change what the
other tests of the session see if it ran on their shared relay.

Each operation is driven through schemathesis' Python API (`APIOperation.as_strategy` under
Hypothesis' `@given`): its pytest integration (`schemathesis.pytest.from_fixture`) needs a node
attribute pytest 9.2 no longer has.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from ..conftest import BACKENDS, running_relay
from ..support import ADMIN_PASSWORD, Api, RelayServer

# Small per operation: ~110 operations x 2 tokens x 2 backends must stay within CI's budget.
# AIPROXY_TEST_FUZZ_EXAMPLES raises it for a deeper run by hand.
MAX_EXAMPLES = int(os.environ.get("AIPROXY_TEST_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance]
PROXY_TEST = "/api/admin/proxy-configs/test"
# Configs the fuzz run itself depends on: the user token is obtained by a scripted login after the
# admin run, which a captcha or a lowered login limit would refuse.
PROTECTED_CONFIGS = frozenset(
    {
        "captcha_enabled",
        "captcha_rate_limit",
        "login_rate_limit_enabled",
        "login_rate_limit_max",
        "login_rate_limit_window",
    }
)


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayServer]:
    """A relay of this module's own, set up like the session's shared one."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz-" + request.param.replace("+", "-"))
    with running_relay(request.param, data_dir, redis_prefix="aiproxy-fuzz") as server:
        yield server


@dataclass
class Caller:
    role: str
    token: str
    admin_id: int


def caller_of(fuzz_relay: RelayServer, role: str) -> Caller:
    """The token of the run: the first admin's, or a user's created just before its run."""
    admin = Api(fuzz_relay.base_url)
    admin.login("admin", ADMIN_PASSWORD)
    admin_id = admin.ok("GET", "/api/profile")["id"]
    token = admin.token
    if role == "user":
        name = f"fuzz{uuid.uuid4().hex[:10]}"
        admin.ok("POST", "/api/admin/users", json={"username": name, "password": "fuzz-pass"})
        user = Api(fuzz_relay.base_url)
        token = user.login(name, "fuzz-pass")
        user.close()
    admin.close()
    assert token is not None
    return Caller(role, token, admin_id)


def _short_proxy_test(case: schemathesis.Case) -> None:
    """The proxy test connects to the generated host and waits up to `timeout` (10 s unless sent,
    60 s at most): keep it at a second so an unreachable address does not eat the run's budget."""
    if case.path == PROXY_TEST and isinstance(case.body, dict):
        timeout = case.body.get("timeout")
        if timeout is None or (
            isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 1
        ):
            case.body["timeout"] = 1


LOCAL_ROOT = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection fails at once


def _local_targets(case: schemathesis.Case) -> None:
    """Only 127.0.0.1 is ever a network target: generated proxy hosts and account roots are
    pointed there (the relay's own OAuth URLs are, by tests/support.py), so a fuzzed probe,
    proxy test or cookie login cannot reach out."""
    if not isinstance(case.body, dict) or case.method.upper() not in ("POST", "PUT"):
        return
    if isinstance(case.body.get("host"), str):
        case.body["host"] = "127.0.0.1"
    for name in ("base_url", "endpoint"):
        if isinstance(case.body.get(name), str) and case.body[name]:
            case.body[name] = LOCAL_ROOT
    if case.path == "/api/admin/accounts" and case.method.upper() == "POST":
        case.body.setdefault("base_url", LOCAL_ROOT)  # not the vendor's default root


def _excluded(case: schemathesis.Case, caller: Caller) -> bool:
    """Calls that would end the run's own session rather than test anything."""
    body = case.body if isinstance(case.body, dict) else {}
    path_params = case.path_parameters or {}
    # Setting the admin's own password ends the admin token the rest of the run uses. (Deleting,
    # disabling or demoting oneself is refused by the API, so those are fuzzed.)
    own_account = case.path == "/api/admin/users/{user_id}" and path_params.get("user_id") == caller.admin_id
    if own_account and case.method.upper() == "PUT" and body.get("password"):
        return True
    # A captcha or a lower login limit would refuse the scripted login of the user run.
    key = body.get("key")
    return case.path == "/api/admin/configs" and isinstance(key, str) and key in PROTECTED_CONFIGS


# Headers that decide how HTTP frames the request itself: a generated value (a `content-length` of
# "C{y j`", say) makes the request malformed, which the server refuses with a plain 400 before any
# route sees it (tests/gateway/test_connection_limits.py covers that layer). Not the API's schema.
FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}
)


def _reframes_http(case: schemathesis.Case) -> bool:
    return any(name.lower() in FRAMING_HEADERS for name in (case.headers or {}))


def _strategy(operation: Any) -> SearchStrategy[schemathesis.Case]:
    """Valid input, and input that breaks the schema (where the operation takes any)."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    takes_input = any(True for _ in operation.iter_parameters()) or bool(operation.body)
    if not takes_input:
        return positive  # type: ignore[no-any-return]
    return st.one_of(positive, operation.as_strategy(GenerationMode.NEGATIVE))


def _fuzz_operation(operation: Any, caller: Caller, base_url: str, statuses: Counter[int]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        phases=[Phase.generate],  # no shrinking: a failure is reported as found
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=_strategy(operation))
    def run(case: schemathesis.Case) -> None:
        assume(not _excluded(case, caller) and not _reframes_http(case))
        _short_proxy_test(case)
        _local_targets(case)
        response = case.call_and_validate(
            base_url=base_url, headers={"Authorization": f"Bearer {caller.token}"}, checks=CHECKS
        )
        statuses[response.status_code] += 1

    run()


def fuzz_every_operation(fuzz_relay: RelayServer, role: str) -> None:
    caller = caller_of(fuzz_relay, role)
    config = schemathesis.Config.from_dict({"request-timeout": 30})
    schema = schemathesis.openapi.from_url(f"{fuzz_relay.base_url}/api/openapi.json", config=config)
    # /health (and any other route outside /api) has no envelope and no error statuses of its own.
    schema = schema.include(path_regex="^/api/")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _fuzz_operation(operation, caller, fuzz_relay.base_url, statuses)
        # Each operation's first failure, with the request that caused it (schemathesis raises its
        # findings as a BaseExceptionGroup).
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    elapsed = time.monotonic() - started
    print(f"fuzzed {operations} operations as {caller.role} in {elapsed:.1f} s: {sorted(statuses.items())}")
    assert operations >= 100
    assert not failures, "\n\n".join(failures)
