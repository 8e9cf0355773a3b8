"""Catalog: migrations, atomic job claims, crash recovery."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from indexer import catalog
from indexer.db import MIGRATIONS_DIR, make_engine, make_session_factory, migrate, session_scope


@pytest.fixture
def sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _add(sessions, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    with session_scope(sessions) as session:
        for i in range(n):
            video = catalog.add_video(
                catalog.NewVideo(sha256=f"{i:064x}", storage_path=f"x/{i}", size_bytes=1), session=session
            )
            ids.append(video.id)
    return ids


def test_migrations_create_the_schema_and_are_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    migrate(engine)
    migrate(engine)  # every start runs it
    inspector = inspect(engine)
    columns = {c["name"] for c in inspector.get_columns("videos")}
    assert {
        "id",
        "sha256",
        "title",
        "external_id",
        "metadata",
        "status",
        "failure_reason",
        "attempts",
        "duration",
        "fps",
        "frames_indexed",
        "storage_path",
        "created_at",
        "updated_at",
        "indexed_at",
    } <= columns
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert revision == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()  # the newest migration
    engine.dispose()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """Autogenerate finds nothing to do: the ORM and the migration describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from indexer.orm import Base

    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    migrate(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_sha256_is_unique(sessions) -> None:  # type: ignore[no-untyped-def]
    _add(sessions, 1)
    with pytest.raises(IntegrityError):
        _add(sessions, 1)


def test_concurrent_claims_hand_out_each_job_once(sessions) -> None:  # type: ignore[no-untyped-def]
    ids = _add(sessions, 60)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with session_scope(sessions) as session:
                video_id = catalog.claim_next(session=session)
            if video_id is None:
                return
            with lock:
                claimed.append(video_id)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == ids
    with session_scope(sessions) as session:
        assert catalog.count_by_status(session=session)["processing"] == 60


def test_claims_go_oldest_first_and_count_attempts(sessions) -> None:  # type: ignore[no-untyped-def]
    ids = _add(sessions, 3)
    with session_scope(sessions) as session:
        assert catalog.claim_next(session=session) == ids[0]
        assert catalog.get_video(ids[0], session=session).attempts == 1


def test_recovery_requeues_interrupted_jobs_until_attempts_run_out(sessions) -> None:  # type: ignore[no-untyped-def]
    first, second = _add(sessions, 2)
    with session_scope(sessions) as session:
        catalog.claim_next(session=session)
        catalog.claim_next(session=session)
        catalog.get_video(second, session=session).attempts = 3
    with session_scope(sessions) as session:
        recovery = catalog.recover_interrupted(session=session, max_attempts=3)
    assert recovery.requeued == [first] and recovery.failed == [second]
    with session_scope(sessions) as session:
        assert catalog.get_video(first, session=session).status == "queued"
        failed = catalog.get_video(second, session=session)
        assert failed.status == "failed" and "interrupted" in failed.failure_reason


def test_mark_ready_only_from_processing(sessions) -> None:  # type: ignore[no-untyped-def]
    (video_id,) = _add(sessions, 1)
    with session_scope(sessions) as session:
        assert not catalog.mark_ready(video_id, session=session, duration=1.0, fps=25.0, frames_indexed=1)
        catalog.claim_next(session=session)
        assert catalog.mark_ready(video_id, session=session, duration=1.0, fps=25.0, frames_indexed=1)
        video = catalog.get_video(video_id, session=session)
        assert video.status == "ready" and video.indexed_at is not None and video.indexed_at.tzinfo is not None
