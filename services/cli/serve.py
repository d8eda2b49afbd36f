"""`scheduler.py serve`: the HTTP app (REST API and operations endpoints) without scheduling.

Stateless over PostgreSQL and Redis, so it can run on other hosts or scale apart from the
daemons: a trigger or a cancel becomes a `run_requests` row that a live daemon acts on.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from services.cli.common import EXIT_OK
from services.clock import SYSTEM_CLOCK
from services.config import Settings, get_settings
from services.engine.liveness import instance_summaries
from services.errors import DatabaseUnavailable
from services.lock.client import create_redis_client
from services.lock.sentinel import endpoint as redis_endpoint
from services.lock.target import RedisTarget
from services.log import configure_logging, get_logger, secrets_of
from services.store.pool import DatabaseConnection

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the REST API and operations endpoints without scheduling anything",
        epilog="example: HTTP_HOST=0.0.0.0 HTTP_PORT=8008 python scheduler.py serve",
    )
    p.add_argument("--host", help="listen address (default: HTTP_HOST)")
    p.add_argument("--port", type=int, help="listen port (default: HTTP_PORT)")
    p.set_defaults(handler=cmd_serve)


class ServeOps:
    """What /ready, /status and /metrics show for a process that only serves the API."""

    def __init__(self, settings: Settings, db: DatabaseConnection, stop: threading.Event):
        self.metrics_registry = CollectorRegistry()
        self.redis_target = RedisTarget.from_settings(settings)
        self.db = db
        self.stop = stop
        self.settings = settings
        self._redis = create_redis_client(self.redis_target, max_connections=4, socket_timeout=5)

    def readiness_problem(self) -> str | None:
        return "stopping" if self.stop.is_set() else None

    def check_database(self) -> None:
        if not self.db.ping():
            raise DatabaseUnavailable("PostgreSQL does not answer")

    def live_instances(self) -> list[dict[str, Any]]:
        return instance_summaries(self._redis, self.settings.redis_key_prefix)

    def status(self) -> dict[str, Any]:
        return {
            "mode": "serve",
            "pid": os.getpid(),
            "schedules_anything": False,
            "redis": redis_endpoint(self._redis),
        }

    def close(self) -> None:
        self._redis.close()


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here, not at the top: scheduler.py loads every command's module, and FastAPI,
    # pydantic, uvicorn and jinja2 would cost every other command (`run` among them) start-up
    # time and memory.
    from services.web.assembly import api_context, build_web_server, open_api_pool
    from services.web.limits import HttpLimits

    settings = get_settings()
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        instance_id=settings.instance_id,
        secrets=secrets_of(settings),
    )
    stop = threading.Event()
    db = open_api_pool(settings)
    ops = ServeOps(settings, db, stop)
    api = api_context(settings, db, live_instances=ops.live_instances, clock=SYSTEM_CLOCK)
    server = build_web_server(
        ops,
        host=args.host or settings.http_host,
        port=settings.http_port if args.port is None else args.port,
        clock=SYSTEM_CLOCK,
        api=api,
        closers=[ops.close, db.close],
        limits=HttpLimits.from_settings(settings),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    server.start()
    log.info("serve.started", host=server.host, port=server.port)
    stop.wait()
    log.info("serve.stopping")
    server.stop()
    return EXIT_OK
