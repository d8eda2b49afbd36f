"""What every command shares: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

from services.logging import mask_secrets

EXIT_OK = 0
EXIT_FAILED = 1  # a failed check, an unknown id, an unreachable service
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print one clear line on stderr and return the exit code."""
    print(f"error: {mask_secrets(message)}", file=sys.stderr)
    return code


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    json.dump(document, sys.stdout, default=str, indent=2, sort_keys=True)
    sys.stdout.write("\n")
