"""What every command shares: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from services.log import mask_secrets

EXIT_OK = 0
EXIT_FAILED = 1  # a failed check, an unknown id, an unreachable service
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print one clear line on stderr and return the exit code."""
    print(f"error: {mask_secrets(message)}", file=sys.stderr)
    return code


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    json.dump(document, sys.stdout, default=_json_default, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table on stdout (human output; scripts use --json)."""
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def print_record(record: dict[str, Any]) -> None:
    width = max(len(k) for k in record)
    for key, value in record.items():
        print(f"{key.ljust(width)}  {_cell(value, limit=None)}")


def _cell(value: Any, limit: int | None = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    elif isinstance(value, dict | list):
        text = json.dumps(value, default=str, sort_keys=True)
    elif isinstance(value, float):
        text = f"{value:.3f}"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
