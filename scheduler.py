"""Enhanced Scheduler command line: `python scheduler.py --help`."""

from __future__ import annotations

import sys

from services.cli.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
