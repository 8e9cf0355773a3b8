"""Catalog database: engine, sessions and the schema migrations applied at start.

SQLite (embedded) and PostgreSQL (deployed) go through the same SQLAlchemy engine and the same
Alembic migrations; only the URL differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)

# Seconds a SQLite writer waits for another writer before giving up ("database is locked").
SQLITE_BUSY_TIMEOUT_S = 30
# Seconds one connection attempt to a database server may take (a host that drops packets would
# otherwise hold it for the kernel's TCP timeout, minutes). A URL's own connect_timeout wins.
CONNECT_TIMEOUT_S = 10
# Pauses between attempts while waiting for a database server: short first, then capped.
WAIT_FIRST_PAUSE_S = 0.5
WAIT_MAX_PAUSE_S = 5.0


def make_engine(url: str) -> Engine:
    """An engine for the catalog; SQLite gets WAL and a busy timeout so threads can share it, a
    server a bounded connect timeout."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns, which "ready only when durable" relies on.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


class DatabaseUnavailable(RuntimeError):
    """The catalog's database server could not be reached within the time allowed."""


def wait_for_database(engine: Engine, timeout_s: float) -> None:
    """Return once `engine` connects; retry for up to `timeout_s` while the server cannot be reached.

    A database started together with the service refuses connections, or is not yet in DNS, for
    its first seconds; engines that start `hapvr migrate` without waiting for its health check
    (podman-compose ignores `service_healthy`) would fail the migration on that race. A SQLite
    file needs no server: it is tried once. Raises DatabaseUnavailable with the last reason.
    """
    started = time.monotonic()
    deadline = started + (0.0 if engine.dialect.name == "sqlite" else timeout_s)
    pause = WAIT_FIRST_PAUSE_S
    attempts = 0
    while True:
        attempts += 1
        try:
            with engine.connect():
                return
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = time.monotonic() - started
                raise DatabaseUnavailable(
                    f"catalog database unreachable ({attempts} attempts in {waited:.0f} s): {reason}"
                ) from error
            log.warning("catalog database not reachable yet (%s); retrying for %.0f s more", reason, remaining)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, WAIT_MAX_PAUSE_S)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows handed to a response stay readable after the commit.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to `engine`, so migrations never read a URL from anywhere else."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


# Key of the PostgreSQL advisory lock held while migrating (any constant unique to this project).
_MIGRATION_LOCK_KEY = 0x68617076  # "hapv"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the catalog schema up to `revision` (idempotent; run at every start).

    On PostgreSQL a transaction-scoped advisory lock makes replicas that start together
    migrate one after the other (the later ones find nothing to do). SQLite serialises
    writers itself.
    """
    from alembic import command
    from sqlalchemy import text

    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
