"""Alembic environment of the catalog.

The service runs migrations programmatically (indexer.db.migrate) and hands over its own
connection, so no URL is read here. From the command line (`alembic -c indexer/migrations/alembic.ini
upgrade head`) the URL comes from the service settings, the one place configuration lives.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from indexer.orm import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from indexer.db import make_engine
    from indexer.settings import Settings

    url = config.get_main_option("sqlalchemy.url") or Settings().catalog_url
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    from indexer.settings import Settings

    url = config.get_main_option("sqlalchemy.url") or Settings().catalog_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
