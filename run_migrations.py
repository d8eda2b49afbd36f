"""Apply pending database migrations: `python run_migrations.py [--status]`.

Uses DATABASE_URL (environment or .env). Safe to run from several processes at once.
"""

from __future__ import annotations

import sys

from services.cli.migrate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
