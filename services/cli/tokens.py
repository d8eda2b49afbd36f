"""Token commands: `token create NAME [--role R]`, `token list`, `token revoke NAME`."""

from __future__ import annotations

import argparse

from services.cli import local_token
from services.cli.common import EXIT_OK, EXIT_USAGE, fail, print_json, print_table
from services.cli.context import tokens
from services.errors import InvalidTokenRequest, TokenNotFound
from services.model.vocabulary import TokenRole

LIST_COLUMNS = ["name", "role", "created_at", "last_used_at", "revoked_at"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser(
        "token",
        help="manage API tokens (create, list, revoke)",
        epilog="example: python scheduler.py token create deploy-bot --role write",
    )
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    p = actions.add_parser(
        "create",
        help="create a token and print it (this once only)",
        epilog="example: python scheduler.py token create ci --role read --json",
    )
    p.add_argument("name")
    p.add_argument("--role", choices=[r.value for r in TokenRole], default=TokenRole.READ.value)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_create)

    p = actions.add_parser(
        "list",
        help="list tokens (never the tokens themselves)",
        epilog="example: python scheduler.py token list --json",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = actions.add_parser(
        "revoke",
        help="revoke a token at once (exit 1 if there is none of that name)",
        epilog="example: python scheduler.py token revoke ci",
    )
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_revoke)

    local_token.add_arguments(actions)


def cmd_create(args: argparse.Namespace) -> int:
    try:
        record, token = tokens().create(args.name, args.role)
    except InvalidTokenRequest as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.json:
        print_json({"name": record.name, "role": record.role, "token": token})
    else:
        print(f"created {record.role} token {record.name!r}; it is shown this once only:")
        print(token)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    rows = [t.to_dict() for t in tokens().list()]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LIST_COLUMNS)
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    if not tokens().revoke(args.name):
        return fail(str(TokenNotFound(args.name)))
    if args.json:
        print_json({"revoked": args.name})
    else:
        print(f"revoked token {args.name!r}")
    return EXIT_OK
