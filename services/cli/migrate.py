"""`migrate` (and run_migrations.py): apply pending migrations, or list them with --status."""

from __future__ import annotations

import argparse

from services.cli.common import EXIT_OK, fail, print_json
from services.config import load_settings
from services.errors import SchedulerError
from services.store.migrations import Migrator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", action="store_true", help="list applied and pending migrations")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    try:
        migrator = Migrator(load_settings().database_url)
        if args.status:
            states = migrator.status()
            if args.json:
                print_json(
                    [
                        {"version": s.version, "name": s.name, "applied_at": s.applied_at}
                        for s in states
                    ]
                )
            else:
                for s in states:
                    when = s.applied_at.isoformat() if s.applied_at else "pending"
                    print(f"{s.version:03d}_{s.name:<40} {when}")
            return EXIT_OK
        applied = migrator.apply()
    except SchedulerError as exc:
        return fail(str(exc))
    if args.json:
        print_json({"applied": [f.filename for f in applied]})
    elif applied:
        for file in applied:
            print(f"applied {file.filename}")
    else:
        print("database is up to date; nothing to apply")
    return EXIT_OK


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="run_migrations.py",
        description="Apply pending migrations to DATABASE_URL (safe to run concurrently).",
        epilog="example: DATABASE_URL=postgresql://postgres@127.0.0.1/enhanced_scheduler "
        "python run_migrations.py --status",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
