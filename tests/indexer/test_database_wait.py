"""`hapvr migrate` against a PostgreSQL server that is not up yet (127.0.0.1:5432, the real server).

A database started together with the deployment refuses connections for its first seconds; the
migration waits for it for a bounded time. The server "comes up" here as a TCP relay to the real
one that starts listening after a delay; the relay's port refuses connections until then.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from app.cli import main
from indexer.db import MIGRATIONS_DIR

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def _postgres_down() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as error:  # noqa: BLE001 - any reason to skip is reported
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} unreachable: {type(error).__name__}: {error}"


pytestmark = pytest.mark.skipif(bool(_postgres_down()), reason=_postgres_down() or "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def late_relay(port: int, delay_s: float) -> Iterator[None]:
    """Relay 127.0.0.1:`port` to the real server, listening only `delay_s` after entry."""
    stop = threading.Event()

    def serve() -> None:
        if stop.wait(delay_s):
            return
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection((PG_HOST, PG_PORT))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database on the real server; its name."""
    import psycopg

    name = f"hapvr_wait_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_waits_for_a_server_that_comes_up(
    database: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    started = time.monotonic()
    with late_relay(port, delay_s=2.0):
        code = main(["migrate", "--database-url", url, "--wait", "30"])
    elapsed = time.monotonic() - started
    assert code == 0, caplog.text
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()  # the newest migration
    assert capsys.readouterr().out.splitlines() == [f"catalog at revision {head}"]
    assert 2.0 <= elapsed < 30
    assert "not reachable yet" in caplog.text and "refused" in caplog.text


def test_migrate_gives_up_after_the_wait_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    started = time.monotonic()
    code = main(["migrate", "--database-url", url, "--wait", "2"])
    elapsed = time.monotonic() - started
    assert code == 1
    assert 2.0 <= elapsed < 10
    (failure,) = [r for r in caplog.records if r.levelname == "ERROR"]
    message = failure.getMessage()
    assert re.search(r"catalog database unreachable \(\d+ attempts in \d+ s\): .*refused", message), message


def test_migrate_does_not_wait_for_a_sqlite_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A SQLite file that cannot be opened (here: a folder) is no server starting up: one attempt.
    (tmp_path / "catalog.sqlite3").mkdir()
    started = time.monotonic()
    code = main(["migrate", "--database-url", f"sqlite:///{tmp_path / 'catalog.sqlite3'}", "--wait", "30"])
    assert code == 1 and time.monotonic() - started < 5
    assert "unreachable (1 attempts in 0 s)" in caplog.text
