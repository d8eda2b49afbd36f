"""Argument parsing and dispatch for `python scheduler.py COMMAND`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from services.cli import (
    audit,
    backfill,
    channels,
    import_beat,
    migrate,
    pause,
    runs,
    schedules,
    serve,
    sync,
    tokens,
)
from services.cli.common import EXIT_OK, fail
from services.errors import ConfigurationError, SchedulerError


@dataclass(frozen=True)
class Daemon:
    """What the commands need of the daemon itself, passed in by scheduler.py (the CLI never
    builds one): `run` blocks until SIGTERM/SIGINT and returns the exit code; `trigger_locally`
    runs one schedule in this process (`trigger --local`)."""

    run: Callable[[], int]
    trigger_locally: runs.LocalTrigger


def _quiet_logging() -> None:
    """Commands print their result on stdout; only warnings and errors go to stderr."""
    from services.config import get_settings
    from services.log import configure_logging, secrets_of

    try:
        settings = get_settings()
    except ConfigurationError:
        return  # reported by the command itself
    configure_logging(
        level="WARNING",
        fmt="console",
        instance_id=settings.instance_id,
        secrets=secrets_of(settings),
    )


Command = tuple[str, str, str, ModuleType]

COMMANDS: list[Command] = [
    ("migrate", "apply pending database migrations", "scheduler.py migrate --status", migrate),
    ("sync", "sync schedules from API_URL now", "scheduler.py sync --dry-run", sync),
    (
        "import-celery-beat",
        "create celery schedules from django-celery-beat's tables",
        "scheduler.py import-celery-beat --dsn postgresql://app@db/app --dry-run",
        import_beat,
    ),
]


def _add_run(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], run: Callable[[], int]
) -> None:
    parser = subparsers.add_parser(
        "run",
        help="start the scheduler daemon (blocks until SIGTERM/SIGINT)",
        epilog="example: python scheduler.py run",
    )
    parser.set_defaults(handler=lambda _args: run())


def build_parser(daemon: Daemon) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scheduler.py",
        description="Enhanced Scheduler: schedules in PostgreSQL, runs under Redis locks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(subparsers, daemon.run)
    schedules.register(subparsers)
    pause.register(subparsers)
    backfill.register(subparsers)
    runs.register(subparsers, trigger_locally=daemon.trigger_locally)
    tokens.register(subparsers)
    channels.register(subparsers)
    audit.register(subparsers)
    serve.register(subparsers)
    for name, help_text, example, module in COMMANDS:
        sub = subparsers.add_parser(name, help=help_text, epilog=f"example: python {example}")
        module.add_arguments(sub)
        handler: Callable[[argparse.Namespace], int] = module.run
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str], daemon: Daemon) -> int:
    args = build_parser(daemon).parse_args(argv)
    if args.command not in ("run", "serve"):  # the long-running ones log like a daemon
        _quiet_logging()
    try:
        code: int = args.handler(args)
    except ConfigurationError as exc:
        return fail(str(exc))
    except SchedulerError as exc:  # unreachable database, unknown id, ...: one line, no trace
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `scheduler.py history | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    return code
