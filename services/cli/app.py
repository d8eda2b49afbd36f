"""Argument parsing and dispatch for `python scheduler.py COMMAND`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import ModuleType

from services.cli import migrate
from services.cli.common import EXIT_USAGE, fail
from services.errors import ConfigurationError

Command = tuple[str, str, str, ModuleType]

COMMANDS: list[Command] = [
    ("migrate", "apply pending database migrations", "scheduler.py migrate --status", migrate),
]


def _add_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="start the scheduler daemon (blocks until SIGTERM/SIGINT)",
        epilog="example: python scheduler.py run",
    )
    parser.set_defaults(handler=_run_daemon)


def _run_daemon(_: argparse.Namespace) -> int:
    from services.enhanced_scheduler import run_enhanced_scheduler

    code: int = run_enhanced_scheduler()
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scheduler.py",
        description="Enhanced Scheduler: schedules in PostgreSQL, runs under Redis locks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(subparsers)
    for name, help_text, example, module in COMMANDS:
        sub = subparsers.add_parser(name, help=help_text, epilog=f"example: python {example}")
        module.add_arguments(sub)
        handler: Callable[[argparse.Namespace], int] = module.run
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigurationError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_USAGE + 128
    return code
