# cfv: one image for every role. The default command runs gateway, relay and a worker together (`cfv run`);
# docker-compose.yml runs each role in its own container instead (`cfv gateway`, `cfv worker`, `cfv relay`)
# and `cfv migrate` once before them. Configuration is by CFV_* variables: see deploy/cfv.env.example.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package is built from (pyproject.toml names README.md as the readme), so that editing tests or
# deploy files does not invalidate the install layer. No dev extras: the image carries no test tools.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY service ./service
COPY schemas ./schemas
RUN pip install . \
    && cd / && rm -rf /build

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin cfv
USER cfv
WORKDIR /app

# The gateway's default address is 127.0.0.1, unreachable from outside the container.
ENV CFV_HTTP_HOST=0.0.0.0 \
    CFV_HTTP_PORT=8080
EXPOSE 8080

# SIGINT is what every cfv command stops cleanly on (`cfv run` passes it to its children; the single roles
# finish through asyncio's KeyboardInterrupt handling), so `docker stop` does not wait for its SIGKILL.
STOPSIGNAL SIGINT
CMD ["cfv", "run"]
