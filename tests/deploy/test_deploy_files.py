"""The deployment files state what the relay needs: checked against the relay's own figures.

No Docker daemon is needed: the compose file and the Dockerfile are read as data, the systemd unit
goes through `systemd-analyze verify`, and nginx parses deploy/nginx.conf (`nginx -t`). Running the
stack for real is test_nginx_stack.py (nginx in front of two relays) and test_image.py (the image,
where a Docker daemon exists).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from aiproxy.config import Settings
from aiproxy.gateway.asgi import MAX_BODY
from aiproxy.runtime_configs import CONFIG_SPECS

from ..support import unavailable
from .files import (
    DOCKERFILE,
    DOCKERIGNORE,
    NGINX_CONF,
    RELAYS,
    REPO,
    UNIT,
    canonical,
    constraint_pins,
    dockerfile_env,
    dockerfile_stages,
    env_example,
    health_check_command,
    instruction_args,
    interpolated,
    load_compose,
    seconds,
    shutdown_drain_seconds,
    unit_entries,
    unit_value,
)
from .nginx import Nginx

SECRETS = ("AIPROXY_SECRET_KEY", "AIPROXY_JWT_SECRET", "AIPROXY_ADMIN_PASSWORD", "POSTGRES_PASSWORD")
SHARED = ("AIPROXY_DATABASE_URL", "AIPROXY_REDIS_URL", "AIPROXY_SECRET_KEY", "AIPROXY_JWT_SECRET")
DB_POOL_PER_PROCESS = 40  # store/db.py: pool_size 20 + max_overflow 20
NOFILE = 65536
# After the drain, the lifespan still writes the queued usage rows and closes its pools.
SHUTDOWN_MARGIN = 10.0


def final_stage_env() -> dict[str, str]:
    return dockerfile_env(dockerfile_stages()[-1])


# -- compose ------------------------------------------------------------------------------------


def test_two_relays_share_the_database_redis_and_both_secrets() -> None:
    services = load_compose()["services"]
    assert set(services) == {*RELAYS, "postgres", "redis", "nginx"}
    envs = [services[name]["environment"] for name in RELAYS]
    assert envs[0] == envs[1], "the relays must run with the same settings"
    env = envs[0]
    for name in SHARED:
        assert name in env, name
    assert env["AIPROXY_DATABASE_URL"].startswith("postgresql+asyncpg://aiproxy:")
    assert env["AIPROXY_DATABASE_URL"].endswith("@postgres:5432/aiproxy")
    assert env["AIPROXY_REDIS_URL"].startswith("redis://redis:6379/")
    # Secrets come from deploy/.env, never from the file, and compose refuses to start without them.
    for name in ("AIPROXY_SECRET_KEY", "AIPROXY_JWT_SECRET", "AIPROXY_ADMIN_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), env[name]
    assert "${POSTGRES_PASSWORD:?" in env["AIPROXY_DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    # Only nginx reaches the relays, so they may trust its X-Forwarded-For.
    assert env["AIPROXY_TRUST_PROXY_HEADERS"] == "true"
    for name in RELAYS:
        assert "ports" not in services[name], f"{name} must only be reachable through nginx"
    assert env["AIPROXY_WORKERS"] == "${AIPROXY_WORKERS:-2}"


def test_each_relay_keeps_its_own_data_volume_at_the_image_data_dir() -> None:
    compose = load_compose()
    data_dir = final_stage_env()["AIPROXY_DATA_DIR"]
    mounts = {name: compose["services"][name]["volumes"] for name in RELAYS}
    volumes = set()
    for name, entries in mounts.items():
        (entry,) = entries
        volume, target = entry.split(":")
        assert target == data_dir, (name, entry)
        volumes.add(volume)
    assert len(volumes) == 2 and volumes <= set(compose["volumes"])


def test_start_order_follows_health_checks() -> None:
    services = load_compose()["services"]
    for name in RELAYS:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert services["nginx"]["depends_on"] == {name: {"condition": "service_healthy"} for name in RELAYS}
    # The relays' health check is the image's HEALTHCHECK; the others are in the compose file.
    for name in ("postgres", "redis", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    assert "/health" in " ".join(health_check_command(dockerfile_stages()[-1]))


def test_relays_run_unprivileged_with_descriptors_and_time_to_drain() -> None:
    services = load_compose()["services"]
    drain = shutdown_drain_seconds()
    for name in (*RELAYS, "nginx"):
        service = services[name]
        assert service["ulimits"]["nofile"] == {"soft": NOFILE, "hard": NOFILE}, name
        assert seconds(service["stop_grace_period"]) >= drain + SHUTDOWN_MARGIN, name
    for name in RELAYS:
        service = services[name]
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert service["init"] is True  # signals reach `aiproxy serve`, which stops its workers
    final = dockerfile_stages()[-1]
    args = dict(i.args.split("=", 1) for i in final if i.keyword == "ARG" and "=" in i.args)
    user = next(i for i in final if i.keyword == "USER").args
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user).split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user  # numeric, so a runtime can tell it is not root


def test_nginx_fronts_both_relays_on_the_port_the_image_listens_on() -> None:
    services = load_compose()["services"]
    nginx = services["nginx"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["ports"] == ["${AIPROXY_HTTP_PORT:-8080}:80"]
    port = final_stage_env()["AIPROXY_PORT"]
    servers = re.findall(r"^\s*server (\S+)", upstream_block(), re.M)
    assert servers == [f"{name}:{port}" for name in RELAYS]
    assert re.search(r"^\s*listen 80;", NGINX_CONF.read_text(), re.M)


def test_databases_stay_on_an_internal_network() -> None:
    compose = load_compose()
    services = compose["services"]
    assert compose["networks"]["backend"]["internal"] is True
    assert services["postgres"]["networks"] == ["backend"] and services["redis"]["networks"] == ["backend"]
    assert services["nginx"]["networks"] == ["edge"]
    for name in RELAYS:
        assert set(services[name]["networks"]) == {"edge", "backend"}  # edge: the way to the vendors


def test_postgres_accepts_every_relay_worker_pool() -> None:
    services = load_compose()["services"]
    command = services["postgres"]["command"]
    limit = int(next(part.split("=")[1] for part in command if part.startswith("max_connections=")))
    workers = int(re.search(r":-(\d+)", services["relay1"]["environment"]["AIPROXY_WORKERS"]).group(1))
    assert limit > len(RELAYS) * workers * DB_POOL_PER_PROCESS


def test_every_variable_is_in_the_example_env_file_without_a_real_secret() -> None:
    text = (REPO / "deploy" / "compose.yaml").read_text()
    used = set(interpolated(text))
    example = env_example()
    assert used == set(example), f"compose uses {sorted(used)}, .env.example has {sorted(example)}"
    for name in SECRETS:
        assert example[name] == "change-me", name


# -- Dockerfile -----------------------------------------------------------------------------------


def test_the_image_is_slim_python_without_build_tools() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2, "a build stage and the final one"
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text())
    assert base is not None and base.group(1).startswith("python:3.11-slim")
    for stage in stages:
        assert stage[0].args.split()[0] == "${PYTHON_IMAGE}"
    final = stages[-1]
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert "apt-get" not in runs and "pip install" not in runs  # nothing built or fetched here
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/aiproxy /opt/aiproxy"]
    install = " ".join(i.args for i in stages[0] if i.keyword == "RUN")
    assert "--only-binary=:all:" in install and "--constraint constraints.txt" in install


def test_the_image_serves_on_all_interfaces_from_a_data_volume() -> None:
    final = dockerfile_stages()[-1]
    env = dockerfile_env(final)
    assert env["AIPROXY_HOST"] == "0.0.0.0"
    assert env["AIPROXY_DATA_DIR"] in instruction_args(next(i for i in final if i.keyword == "VOLUME"))
    entrypoint = instruction_args(next(i for i in final if i.keyword == "ENTRYPOINT"))
    command = instruction_args(next(i for i in final if i.keyword == "CMD"))
    assert [*entrypoint, *command] == ["aiproxy", "serve"]
    check = health_check_command(final)
    assert check[0] == "python", "the slim image has no curl"


def test_what_the_image_copies_exists_and_passes_the_dockerignore() -> None:
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    assert "*" in DOCKERIGNORE.read_text().splitlines(), ".dockerignore lists what goes in, after `*`"
    copied = []
    for stage in dockerfile_stages():
        for instruction in stage:
            if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
                copied.extend(instruction_args(instruction)[:-1])
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert source in allowed, f"{source} is kept out of the build context by .dockerignore"
    # The console ships built; the image has no Node.js to build it.
    assert (REPO / "src" / "aiproxy" / "web" / "static" / "index.html").exists()


def test_the_lock_pins_every_dependency_at_the_pyproject_version() -> None:
    import tomllib

    pins = constraint_pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{line}: pyproject pins exact versions"
        assert pins.get(canonical(requirement.name)) == spec.version, (
            f"deploy/constraints.txt pins {requirement.name} at {pins.get(canonical(requirement.name))}, "
            f"pyproject at {spec.version}: regenerate it (docs/deploy.md, 'The image')"
        )
    # Everything those need, as installed here, is pinned too (and at the installed version).
    missing = []
    todo = [Requirement(line) for line in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonical(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in pins:
            missing.append(name)
        dist = metadata.distribution(requirement.name)
        for extra_line in dist.requires or []:
            sub = Requirement(extra_line)
            extras = requirement.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    assert not missing, f"not in deploy/constraints.txt: {sorted(missing)}"


# -- systemd ----------------------------------------------------------------------------------------


def test_the_unit_runs_as_its_own_user_with_descriptors_and_a_drain() -> None:
    assert unit_value("User") not in ("", "root")
    assert unit_value("EnvironmentFile").startswith("/etc/aiproxy/")
    assert unit_value("ExecStart").split()[1:] == ["serve"]
    assert int(unit_value("LimitNOFILE")) == NOFILE
    assert int(unit_value("LimitNOFILE")) - 512 >= Settings().max_connections  # serving.connection_cap
    assert unit_value("Restart") == "on-failure"
    assert unit_value("KillMode") == "mixed"  # SIGTERM to `aiproxy serve`, which stops its workers
    assert seconds(unit_value("TimeoutStopSec")) >= shutdown_drain_seconds() + SHUTDOWN_MARGIN


def test_the_unit_is_hardened_but_may_write_its_data_dir() -> None:
    assert unit_value("NoNewPrivileges") == "true"
    assert unit_value("ProtectSystem") == "strict"
    assert unit_value("PrivateTmp") == "true"
    environment = dict(v.split("=", 1) for s, k, v in unit_entries() if k == "Environment")
    data_dir = environment["AIPROXY_DATA_DIR"]
    assert data_dir in unit_value("ReadWritePaths").split()
    assert unit_value("WorkingDirectory") == data_dir
    assert f"/var/lib/{unit_value('StateDirectory')}" == data_dir


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed: deploy/aiproxy.service cannot be verified")
    assert analyze is not None
    # The unit as installed, except that ExecStart points at this environment's `aiproxy`.
    unit = tmp_path / "aiproxy.service"
    executable = Path(sys.executable).parent / "aiproxy"
    unit.write_text(UNIT.read_text().replace("/opt/aiproxy/bin/aiproxy", str(executable)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "aiproxy.service" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


# -- nginx ----------------------------------------------------------------------------------------


def nginx_directive(name: str, text: str | None = None) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", NGINX_CONF.read_text() if text is None else text, re.M)


def upstream_block() -> str:
    found = re.search(r"upstream aiproxy_relays \{(.*?)\n    \}", NGINX_CONF.read_text(), re.S)
    assert found is not None, "deploy/nginx.conf has no `upstream aiproxy_relays` block"
    return found.group(1)


def test_nginx_limits_match_the_relay() -> None:
    (size,) = nginx_directive("client_max_body_size")
    assert size == f"{MAX_BODY // (1024 * 1024)}m"
    (headers,) = nginx_directive("large_client_header_buffers")
    assert int(headers.split()[1].rstrip("k")) * 1024 >= Settings().max_header_bytes
    # nginx drops idle upstream connections before the relay closes them.
    (upstream_idle,) = nginx_directive("keepalive_timeout", upstream_block())
    assert seconds(upstream_idle) < Settings().keepalive_timeout
    # A stream may wait on its upstream as long as the relay's `timeout` allows, and a WebSocket idle
    # as long as `websocket_idle_timeout` is by default.
    (read,) = nginx_directive("proxy_read_timeout")
    limits = {spec.key: spec for spec in CONFIG_SPECS}
    assert seconds(read) >= limits["timeout"].maximum
    assert seconds(read) >= limits["websocket_idle_timeout"].default


def test_nginx_streams_and_keeps_client_headers() -> None:
    for directive, value in (
        ("underscores_in_headers", "on"),
        ("proxy_buffering", "off"),
        ("proxy_request_buffering", "off"),
        ("proxy_http_version", "1.1"),
        ("gzip", "off"),
    ):
        assert nginx_directive(directive) == [value], directive


def test_nginx_parses_the_config(tmp_path: Path) -> None:
    result = Nginx(tmp_path, (18080, 18081)).check()  # parsed, nothing connects to the relays
    assert result.returncode == 0, result.stderr
