"""`hapvr migrate`: bring the catalog schema up to date and exit.

`hapvr serve` and `hapvr worker` migrate at start anyway; this is the one-shot form for
deployments that run migrations as their own step before the replicas start. Started together
with its database, it waits for the server to accept connections (HAPVR_DATABASE_WAIT_S).
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
    parser.add_argument(
        "--wait",
        dest="database_wait_s",
        type=float,
        metavar="SECONDS",
        help="retry an unreachable database server this long (HAPVR_DATABASE_WAIT_S, default 60)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from sqlalchemy import text

    from indexer.db import DatabaseUnavailable, make_engine, migrate, wait_for_database
    from indexer.settings import Settings

    settings = Settings(**overrides(args, (*CATALOG_FLAGS, "database_wait_s")))
    configure_logging(settings.log_level)
    log = logging.getLogger("hapvr.migrate")
    engine = make_engine(settings.catalog_url)
    try:
        wait_for_database(engine, settings.database_wait_s)
        migrate(engine)
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DatabaseUnavailable as error:
        log.error("%s", error)
        return 1
    finally:
        engine.dispose()
    log.info("catalog at revision %s", revision)
    print(f"catalog at revision {revision}")
    return 0
