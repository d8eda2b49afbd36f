"""Notification channel commands: `channel add|list|remove|test`, and `notifications` (the
latest ones, with their delivery state)."""

from __future__ import annotations

import argparse

from services.cli.common import EXIT_OK, EXIT_USAGE, fail, print_json, print_table
from services.cli.context import channel_admin, notification_store
from services.errors import ChannelExists, ChannelNotFound, InvalidChannel

LIST_COLUMNS = ["name", "kind", "target", "enabled", "created_at"]
RECENT_COLUMNS = ["notification_id", "created_at", "channel", "event", "status", "attempts"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    channel = sub.add_parser(
        "channel",
        help="manage notification channels (add, list, remove, test)",
        epilog="example: python scheduler.py channel add ops --kind slack --url https://hooks...",
    )
    actions = channel.add_subparsers(dest="channel_command", metavar="ACTION", required=True)

    p = actions.add_parser(
        "add",
        help="add a webhook, slack or email channel",
        epilog="examples: channel add ops --kind webhook --url https://alerts.example.com/hook\n"
        "          channel add oncall --kind email --to a@example.com --to b@example.com",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name")
    p.add_argument("--kind", choices=["webhook", "slack", "email"], required=True)
    p.add_argument("--url", help="webhook or slack: the URL to POST to")
    p.add_argument("--to", action="append", default=[], help="email: a recipient (repeatable)")
    p.add_argument("--disabled", action="store_true", help="add it switched off")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_add)

    p = actions.add_parser("list", help="list channels (URLs shown by host only)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = actions.add_parser("remove", help="remove a channel and its pending notifications")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_remove)

    p = actions.add_parser("test", help="send a test message now (exit 1 if it fails)")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_test)

    p = sub.add_parser("notifications", help="the latest notifications and their delivery")
    p.add_argument("--channel")
    p.add_argument("--status", choices=["pending", "sent", "failed", "digested", "dropped"])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_recent)


def cmd_add(args: argparse.Namespace) -> int:
    target: dict[str, object] = {"to": args.to} if args.kind == "email" else {"url": args.url}
    try:
        added = channel_admin().add(args.name, args.kind, target, enabled=not args.disabled)
    except (InvalidChannel, ChannelExists) as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.json:
        print_json(added)
    else:
        print(f"added {added['kind']} channel {added['name']!r}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    rows = channel_admin().list()
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LIST_COLUMNS)
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    try:
        channel_admin().remove(args.name)
    except ChannelNotFound as exc:
        return fail(str(exc))
    if args.json:
        print_json({"removed": args.name})
    else:
        print(f"removed channel {args.name!r}")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    try:
        result = channel_admin().test(args.name)
    except ChannelNotFound as exc:
        return fail(str(exc))
    if args.json:
        print_json(result)
    elif result["delivered"]:
        print(f"test message delivered to {args.name!r}")
    else:
        print(f"test message to {args.name!r} failed: {result['error']}")
    return EXIT_OK if result["delivered"] else 1


def cmd_recent(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        return fail("--limit must be 1-1000", EXIT_USAGE)
    rows = notification_store().recent(limit=args.limit, channel=args.channel, status=args.status)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, RECENT_COLUMNS)
    return EXIT_OK
