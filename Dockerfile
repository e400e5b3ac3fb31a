# Remediator's image: the wheel CI builds, in a virtualenv, on a pinned slim Python.
#
#   docker build -t remediator:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --read-only --tmpfs /tmp \
#     -v remediator-state:/var/lib/remediator \
#     -v "$PWD/policies:/etc/remediator/policies:ro" remediator:0.1.0
#
# It runs as uid/gid 10001 and writes only to /var/lib/remediator (the audit log, its head,
# the pause and approval files: mount a persistent volume there) and /tmp, so the root
# filesystem can be read-only. Settings come from REMEDIATOR_* variables (README.md); it starts
# in dry-run. Deploying to Container Apps: docs/deploy.md.
#
# The base is pinned to a full version; pin its digest too for a reproducible build:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   (prints the digest)
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: the wheel, exactly as CI builds it ------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN python -m pip wheel --no-deps --wheel-dir /dist .

# ---- runtime: the wheel installed into a virtualenv, as CI installs it -------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="remediator" \
      org.opencontainers.image.description="Guarded, automated remediation of Azure workloads from declarative SLO policies" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

RUN groupadd --system --gid 10001 remediator \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/remediator --no-create-home \
      --shell /usr/sbin/nologin remediator \
 && install --directory --owner=10001 --group=10001 --mode=0750 /var/lib/remediator

# pip compiles the bytecode here, at build time: at run time nothing is written beside the code.
# constraints.txt holds the exact dependency versions the test suite passed with.
COPY --from=build /dist/ /tmp/dist/
COPY constraints.txt /tmp/dist/constraints.txt
RUN python -m venv --without-pip /opt/remediator \
 && python -m pip --python /opt/remediator/bin/python install \
      --no-cache-dir --disable-pip-version-check -c /tmp/dist/constraints.txt /tmp/dist/*.whl \
 && rm -rf /tmp/dist

# The example estate from policies/; replace it with a volume or a derived image.
COPY policies /etc/remediator/policies

ENV PATH=/opt/remediator/bin:$PATH \
    HOME=/var/lib/remediator \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REMEDIATOR_LOG_FORMAT=json \
    REMEDIATOR_POLICIES=/etc/remediator/policies \
    REMEDIATOR_AUDIT_PATH=/var/lib/remediator/audit.jsonl \
    REMEDIATOR_LISTEN=0.0.0.0:9464

USER 10001:10001
WORKDIR /var/lib/remediator
EXPOSE 9464
# /healthz on the port REMEDIATOR_LISTEN sets above (change both together). Container Apps
# ignores HEALTHCHECK and uses the probes in deploy/ instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
ENTRYPOINT ["remediator"]
CMD ["run"]
