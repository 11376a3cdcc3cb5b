# Shared by bin/dev and bin/test: a virtualenv with cfv installed, and PostgreSQL, RabbitMQ and Redis answering.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PG_HOST=${CFV_PG_HOST:-127.0.0.1}
PG_PORT=${CFV_PG_PORT:-5432}
AMQP_HOST=${CFV_AMQP_HOST:-127.0.0.1}
AMQP_PORT=${CFV_AMQP_PORT:-5672}
REDIS_HOST=${CFV_REDIS_HOST:-127.0.0.1}
REDIS_PORT=${CFV_REDIS_PORT:-6379}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_venv() {
  local stamp="$VENV/.installed"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Python 3.11+ with venv is required)"
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing cfv and its development tools"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e "$ROOT[dev]"
    touch "$stamp"
  fi
}

answers() { # host port
  "$VENV/bin/python" - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

is_local() { case "$1" in 127.*|localhost) return 0 ;; *) return 1 ;; esac; }

# Services just started (say by `docker compose up -d`) take a few seconds to listen.
wait_for() { # host port seconds
  local i
  for i in $(seq 1 "$3"); do answers "$1" "$2" && return 0; sleep 1; done
  return 1
}

ensure_postgres() {
  answers "$PG_HOST" "$PG_PORT" && return 0
  if is_local "$PG_HOST" && command -v pg_ctlcluster >/dev/null; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_for "$PG_HOST" "$PG_PORT" 30 && return 0
  elif wait_for "$PG_HOST" "$PG_PORT" 60; then
    return 0
  fi
  die "PostgreSQL does not answer on $PG_HOST:$PG_PORT. Start it, e.g.: docker compose up -d postgres rabbitmq redis"
}

ensure_rabbitmq() {
  if ! answers "$AMQP_HOST" "$AMQP_PORT"; then
    if is_local "$AMQP_HOST" && command -v rabbitmq-server >/dev/null; then
      say "starting RabbitMQ"
      rabbitmq-server -detached
      rabbitmqctl await_startup >/dev/null
    elif ! wait_for "$AMQP_HOST" "$AMQP_PORT" 60; then
      die "RabbitMQ does not answer on $AMQP_HOST:$AMQP_PORT. Start it, e.g.: docker compose up -d postgres rabbitmq redis"
    fi
  fi
  # cfv routes commands through a consistent-hash exchange; the tests use the management API for vhosts.
  if is_local "$AMQP_HOST" && command -v rabbitmq-plugins >/dev/null; then
    rabbitmq-plugins enable --quiet rabbitmq_consistent_hash_exchange rabbitmq_management >/dev/null \
      || die "could not enable the RabbitMQ plugins rabbitmq_consistent_hash_exchange and rabbitmq_management"
  fi
}

# Redis holds only the gateway's rate-limit counters: a local one is started without persistence.
ensure_redis() {
  answers "$REDIS_HOST" "$REDIS_PORT" && return 0
  if is_local "$REDIS_HOST" && command -v redis-server >/dev/null; then
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no >/dev/null
    wait_for "$REDIS_HOST" "$REDIS_PORT" 30 && return 0
  elif wait_for "$REDIS_HOST" "$REDIS_PORT" 60; then
    return 0
  fi
  die "Redis does not answer on $REDIS_HOST:$REDIS_PORT. Start it, e.g.: docker compose up -d redis"
}

# The docs page is tested in a real headless Chromium (Debian's package).
ensure_chromium() {
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing Chromium (apt-get install chromium), for the docs page's browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
      || die "could not install Chromium: apt-get install chromium"
    return 0
  fi
  die "Chromium is needed by the docs page's browser test: install it (Debian: apt-get install chromium)"
}

ensure_services() {
  ensure_postgres
  ensure_rabbitmq
  ensure_redis
}
