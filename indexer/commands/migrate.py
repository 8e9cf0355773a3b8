"""`hapvr migrate`: bring the catalog schema up to date and exit.

`hapvr serve` and `hapvr worker` migrate at start anyway; this is the one-shot form for
deployments that run migrations as their own step before the replicas start.
"""

from __future__ import annotations

import argparse

from indexer.commands.options import CATALOG_FLAGS, add_catalog_flags, configure_logging, overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply the catalog's schema migrations",
        description="Apply the Alembic migrations to the catalog. Flags override HAPVR_* settings.",
    )
    add_catalog_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from sqlalchemy import text

    from indexer.db import make_engine, migrate
    from indexer.settings import Settings

    settings = Settings(**overrides(args, CATALOG_FLAGS))
    configure_logging(settings.log_level)
    engine = make_engine(settings.catalog_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    logging.getLogger("hapvr.migrate").info("catalog at revision %s", revision)
    print(f"catalog at revision {revision}")
    return 0
