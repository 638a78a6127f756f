# syntax=docker/dockerfile:1
# The relay from this source tree on python:3.11-slim, run as an unprivileged user.
#
#   docker build -t aiproxy .
#   docker run -p 8080:8080 -v aiproxy-data:/var/lib/aiproxy -e AIPROXY_ADMIN_PASSWORD=... aiproxy
#
# deploy/compose.yaml runs it scaled out (two relays, PostgreSQL, Redis, nginx): see docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/constraints.txt ./
# The project as a wheel, then every dependency as a published wheel at its locked version
# (deploy/constraints.txt): nothing is compiled, so no compiler is needed here or shipped below.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/aiproxy \
 && /opt/aiproxy/bin/pip install --only-binary=:all: --constraint constraints.txt /wheels/aiproxy-*.whl

FROM ${PYTHON_IMAGE}
ARG AIPROXY_UID=10001
RUN groupadd --system --gid "${AIPROXY_UID}" aiproxy \
 && useradd --system --uid "${AIPROXY_UID}" --gid aiproxy --home-dir /var/lib/aiproxy --no-create-home \
        --shell /usr/sbin/nologin aiproxy \
 && install -d -o aiproxy -g aiproxy -m 0750 /var/lib/aiproxy
COPY --from=build /opt/aiproxy /opt/aiproxy
# The data dir holds the usage journal, the log files and the per-host migration lock (and, on
# SQLite, the database and generated secrets): a volume, one per relay.
ENV PATH=/opt/aiproxy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIPROXY_HOST=0.0.0.0 \
    AIPROXY_PORT=8080 \
    AIPROXY_DATA_DIR=/var/lib/aiproxy
WORKDIR /var/lib/aiproxy
VOLUME ["/var/lib/aiproxy"]
EXPOSE 8080
USER ${AIPROXY_UID}:${AIPROXY_UID}
# Liveness only (GET /health checks no dependency); a load balancer should also watch GET /ready.
# Python, not curl: the slim image has no curl. The start period covers migrations on first start.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('AIPROXY_PORT', '8080'), timeout=2)"]
# SIGTERM drains: requests in flight get up to 30 s (give `docker stop` a longer timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["aiproxy"]
CMD ["serve"]
