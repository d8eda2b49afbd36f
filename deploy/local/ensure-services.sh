#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer (with --for-tests: RabbitMQ too, and nats-server is
# installed) before the daemon or the tests need them.
# With DATABASE_URL / REDIS_URL set, only checks those; otherwise checks the local defaults
# (127.0.0.1:5432 and 127.0.0.1:6379) and starts the local services if installed but stopped.
set -euo pipefail

wait_for() {  # wait_for NAME COMMAND...: up to 30 s
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "error: $name did not become ready within 30 s" >&2
  return 1
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if [ -z "${DATABASE_URL:-}" ]; then
  if ! command -v pg_isready >/dev/null 2>&1; then
    echo "error: PostgreSQL client tools not found; install PostgreSQL (apt-get install postgresql) or set DATABASE_URL" >&2
    exit 1
  fi
  if ! pg_ready; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      echo "starting local PostgreSQL" >&2
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    else
      echo "error: PostgreSQL is not running on 127.0.0.1:5432 and no local cluster is installed; install PostgreSQL or set DATABASE_URL" >&2
      exit 1
    fi
  fi
  wait_for "PostgreSQL on 127.0.0.1:5432" pg_ready
fi

if [ -z "${REDIS_URL:-}" ] && [ -z "${REDIS_HOST:-}" ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "error: redis-server not found; install Redis (apt-get install redis-server) or set REDIS_URL" >&2
    exit 1
  fi
  if ! redis_ready; then
    echo "starting local Redis" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_for "Redis on 127.0.0.1:6379" redis_ready
fi

# The celery job tests use the local RabbitMQ (127.0.0.1:5672, guest/guest), each test on a
# vhost of its own made with rabbitmqctl. Started here when installed but stopped.
rabbit_ready() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
FOR_TESTS=false
[ "${1:-}" = "--for-tests" ] && FOR_TESTS=true
if ! $FOR_TESTS; then exit 0; fi
if [ -z "${CELERY_BROKER_URL:-}" ]; then
  if ! command -v rabbitmqctl >/dev/null 2>&1; then
    echo "error: rabbitmqctl not found; install RabbitMQ (apt-get install rabbitmq-server)" >&2
    exit 1
  fi
  if ! rabbit_ready; then
    echo "starting local RabbitMQ" >&2
    rabbitmq-server -detached >/tmp/ensure-rabbitmq.log 2>&1 || true
    rabbitmqctl -q await_startup --timeout 60 >>/tmp/ensure-rabbitmq.log 2>&1 || true
  fi
  wait_for "RabbitMQ on 127.0.0.1:5672" rabbit_ready
fi

# The nats job tests start private nats-servers (with -js, on spare ports): only the program is
# needed, Debian's package. Installed when missing and we are root; otherwise one clear line.
NATS_SERVER=/usr/sbin/nats-server
if [ ! -x "$NATS_SERVER" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $NATS_SERVER not found; install it (apt-get install nats-server)" >&2
    exit 1
  fi
  echo "installing nats-server (apt-get)" >&2
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server; } \
      >/tmp/ensure-nats-apt.log 2>&1; then
    tail -n 20 /tmp/ensure-nats-apt.log >&2
    echo "error: apt-get could not install nats-server (whole log in /tmp/ensure-nats-apt.log)" >&2
    exit 1
  fi
fi
