"""`hapvr keys create|list|revoke`: manage API keys in the catalog, with or without a running service.

They read the same settings as the service (--data-dir / --database-url like `hapvr migrate`,
else HAPVR_*), so a key made here works at once on every API replica of that catalog.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.commands.options import overrides

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

SCOPES = ("read", "write", "admin")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="Manage the catalog's API keys. Flags override HAPVR_* settings.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key and print it once, alone on the last line")
    create.add_argument("--scope", required=True, choices=SCOPES, help="read < write < admin")
    create.add_argument("--name", help="what the key is for (shown by `hapvr keys list`)")
    actions.add_parser("list", help="every key: id, scope, state, creation time, name (never the key)")
    revoke = actions.add_parser("revoke", help="revoke a key for good")
    revoke.add_argument("id", type=int, help="the key's id (from `hapvr keys list`)")
    for action in actions.choices.values():
        action.add_argument("--data-dir", type=Path, help="data directory holding the default SQLite catalog")
        action.add_argument("--database-url", help="SQLAlchemy URL of the catalog (HAPVR_DATABASE_URL)")
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from indexer.api_keys import NAME_MAX_CHARS, valid_name

    if args.action == "create" and args.name is not None and not valid_name(args.name):
        print(
            f"hapvr keys: error: --name must be at most {NAME_MAX_CHARS} characters, none of them control characters",
            file=sys.stderr,
        )
        return 2
    with _session(args) as session:
        if args.action == "create":
            return _create(session, args.scope, args.name)
        if args.action == "list":
            return _list(session)
        return _revoke(session, args.id)


def _create(session: Session, scope: str, name: str | None) -> int:
    from indexer import api_keys
    from indexer.orm import Scope

    new = api_keys.create_key(Scope(scope), name or None, session=session)
    session.commit()  # stored before it is shown
    print(f"created API key {new.info.id} (scope {scope}); it is shown only now, store it:")
    print(new.key)
    return 0


def _list(session: Session) -> int:
    from indexer import api_keys

    keys = api_keys.list_keys(session=session)
    if not keys:
        print("no API keys")
        return 0
    print(f"{'id':>5}  {'scope':<6} {'state':<8} {'prefix':<13} {'created (UTC)':<20} name")
    for key in keys:
        state = "active" if key.active else "revoked"
        created = key.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{key.id:>5}  {key.scope.value:<6} {state:<8} {key.prefix or '-':<13} {created:<20} {key.name or ''}")
    return 0


def _revoke(session: Session, key_id: int) -> int:
    from indexer import api_keys

    revoked = api_keys.revoke_key(key_id, session=session)
    if revoked is None:
        print(f"hapvr keys: error: no API key {key_id}", file=sys.stderr)
        return 1
    session.commit()
    print(f"revoked API key {key_id} ({revoked.scope.value}{', ' + revoked.name if revoked.name else ''})")
    return 0


@contextmanager
def _session(args: argparse.Namespace) -> Iterator[Session]:
    """A session on the configured catalog, migrated first (a fresh data directory works too)."""
    from indexer.db import make_engine, make_session_factory, migrate, session_scope
    from indexer.settings import Settings

    settings = Settings(**overrides(args, ("data_dir", "database_url")))
    engine = make_engine(settings.catalog_url)
    try:
        migrate(engine)
        with session_scope(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()
