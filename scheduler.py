"""Enhanced Scheduler command line: `python scheduler.py --help`.

The one place, besides the daemon's own module, that builds the daemon: `run` and
`trigger --local` get it from here, so the commands in services/cli never import it.
"""

from __future__ import annotations

import sys
from uuid import UUID

from services.cli.app import Daemon, main
from services.model.occurrence import RunReport


def run_daemon() -> int:
    """`run`: start the daemon; blocks until SIGTERM/SIGINT."""
    from services.enhanced_scheduler import run_enhanced_scheduler

    code: int = run_enhanced_scheduler()
    return code


def trigger_locally(schedule_id: UUID) -> RunReport:
    """`trigger --local`: run a schedule in this process, same lock and history as a daemon."""
    from services.config import get_settings
    from services.enhanced_scheduler import EnhancedScheduler

    scheduler = EnhancedScheduler(settings=get_settings())
    try:
        return scheduler.trigger_now(schedule_id)
    finally:
        scheduler.handlers.close()
        scheduler.db.close()
        scheduler.redis.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], Daemon(run=run_daemon, trigger_locally=trigger_locally)))
