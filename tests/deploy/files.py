"""The deployment files as data: the compose file, the Dockerfile, the systemd unit, the dependency lock.

Parsed here once so the tests state rules, not parsing. Values the files must agree with come from
the relay itself (its settings, its body limit, its shutdown drain), never from copies in the tests.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx.conf"
UNIT = DEPLOY / "aiproxy.service"
ENV_EXAMPLE = DEPLOY / ".env.example"
CONSTRAINTS = DEPLOY / "constraints.txt"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
RELAYS = ("relay1", "relay2")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def interpolated(value: str) -> list[str]:
    """The variable names a compose value takes from the environment (`${NAME}`, `${NAME:-x}`, ...)."""
    return re.findall(r"\$\{([A-Z0-9_]+)", value)


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest, continuation lines joined


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages, each a list of its instructions (comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
        else:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
    return stages


def instruction_args(instruction: Instruction) -> list[str]:
    """An instruction's arguments: the JSON (exec) form, or split like a shell would."""
    if instruction.args.startswith("["):
        parsed = json.loads(instruction.args)
        assert isinstance(parsed, list)
        return [str(part) for part in parsed]
    return shlex.split(instruction.args)


def dockerfile_env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for part in shlex.split(instruction.args):
                name, _, value = part.partition("=")
                env[name] = value
    return env


def health_check_command(stage: list[Instruction]) -> list[str]:
    """The HEALTHCHECK's command in exec form (after its options)."""
    (check,) = [i for i in stage if i.keyword == "HEALTHCHECK"]
    command = check.args[check.args.index("CMD") + len("CMD") :].strip()
    parsed = json.loads(command)
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) of every line of the systemd unit, in order; keys may repeat."""
    entries = []
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_value(key: str, section: str = "Service") -> str:
    values = [v for s, k, v in unit_entries() if s == section and k == key]
    assert len(values) == 1, f"{key}= appears {len(values)} times in [{section}]"
    return values[0]


def seconds(value: str) -> float:
    """A duration as compose and systemd write it: `45s`, `1m30s`, `90`."""
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def shutdown_drain_seconds() -> float:
    """How long `aiproxy serve` lets requests in flight finish after SIGTERM (read from cli.py)."""
    tree = ast.parse((REPO / "src" / "aiproxy" / "cli.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "timeout_graceful_shutdown":
            assert isinstance(node.value, ast.Constant)
            return float(node.value.value)
    raise AssertionError("cli.py passes no timeout_graceful_shutdown to uvicorn")


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()
