# cfv: one image for every role. The default command runs gateway, relay and a worker together (`cfv run`);
# docker-compose.yml runs each role in its own container instead (`cfv gateway`, `cfv worker`, `cfv relay`)
# and `cfv migrate` once before them, and so do the Kubernetes manifests in deploy/k8s/. Configuration is by
# CFV_* variables: see deploy/cfv.env.example.
#
# Two stages: `build` installs cfv and its dependencies into a virtual environment, /opt/cfv; the runtime stage is
# the same base image with that directory copied in, and nothing else (no build tools, no lock files, no wheel).
#
# Base image: python:3.11-slim pinned by the digest of its multi-arch index, so a build takes exactly the image it
# was reviewed with (this one: the tag as published in August 2026, Python 3.11.16 on Debian trixie). Refresh it
# on purpose, in both FROM lines at once (a test keeps them equal): let Dependabot (package-ecosystem "docker") or
# Renovate (dockerfile manager, pinDigests) propose the new digest when the tag moves, or read it with
# `docker buildx imagetools inspect python:3.11-slim`; at least monthly, for Debian's and Python's security fixes.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
# The locks alone first: the dependency layers are rebuilt when a lock changes, not when cfv's code does. Every
# package is pinned with its hashes (bin/lock writes them); pip refuses anything unlisted or altered, and takes
# wheels only (the slim image has no compiler, and every locked package has wheels for amd64 and arm64).
COPY requirements.lock requirements-build.lock ./
# What builds cfv's wheel (hatchling), into this stage's own Python: it stays behind with the stage.
RUN pip install --require-hashes --only-binary=:all: -r requirements-build.lock
# The runtime dependencies, into the environment the runtime stage copies. It gets no pip of its own: this
# stage's pip installs into it (pip --python), and compiles the bytecode there, as the runtime cannot write it.
RUN python -m venv --without-pip /opt/cfv \
    && pip --python /opt/cfv/bin/python install --require-hashes --only-binary=:all: -r requirements.lock

# Only what the package is built from (pyproject.toml names README.md as the readme), so that editing tests or
# deploy files does not invalidate these layers. No dev extras: the image carries no test tools.
COPY pyproject.toml README.md ./
COPY service ./service
COPY schemas ./schemas
# cfv itself, built with the locked hatchling (no build isolation: nothing fetched unpinned), installed without
# dependencies (they are the lock's, above).
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /build/dist . \
    && pip --python /opt/cfv/bin/python install --no-deps /build/dist/cfv-*.whl


FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/cfv/bin:$PATH

# A fixed, unprivileged uid and gid (10001): Kubernetes' runAsNonRoot checks the numeric USER below, and
# deploy/k8s runs the pods as 10001 with a read-only root filesystem.
RUN groupadd --system --gid 10001 cfv \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cfv
COPY --from=build /opt/cfv /opt/cfv
USER 10001:10001
WORKDIR /app

# The gateway's default address is 127.0.0.1, unreachable from outside the container.
ENV CFV_HTTP_HOST=0.0.0.0 \
    CFV_HTTP_PORT=8080
EXPOSE 8080

# SIGINT is what every cfv command stops cleanly on (`cfv run` passes it to its children; the single roles
# drain on SIGTERM or SIGINT within CFV_SHUTDOWN_TIMEOUT), so `docker stop` does not wait for its SIGKILL.
STOPSIGNAL SIGINT
CMD ["cfv", "run"]
