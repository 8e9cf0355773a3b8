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
        "interruptions",
        "duration",
        "fps",
        "frames_indexed",
        "frames_expected",
        "warnings",
        "checkpoint",
        "storage_path",
        "created_at",
        "updated_at",
        "indexed_at",
    } <= columns
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()


def test_upgrading_keeps_rows_and_gives_them_no_interruptions(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    migrate(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO videos (sha256, status, attempts, storage_path, size_bytes, created_at, updated_at) "
                "VALUES (:sha, 'processing', 2, 'a/b', 1, '2026-01-01', '2026-01-01')"
            ),
            {"sha": "0" * 64},
        )
    migrate(engine)
    with session_scope(make_session_factory(engine)) as session:
        (video,) = catalog.list_videos(session=session)[0]
        assert (video.status, video.attempts, video.interruptions, video.checkpoint) == ("processing", 2, 0, None)
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


def test_interrupted_videos_wait_behind_the_others(sessions) -> None:  # type: ignore[no-untyped-def]
    ids = _add(sessions, 3)
    with session_scope(sessions) as session:
        assert catalog.claim_next(session=session) == ids[0]
        catalog.recover_interrupted(session=session, max_interruptions=5)
    claimed = []
    for _ in ids:
        with session_scope(sessions) as session:
            claimed.append(catalog.claim_next(session=session))
    assert claimed == [ids[1], ids[2], ids[0]]


def test_recovery_requeues_interrupted_jobs_without_counting_them_as_attempts(sessions) -> None:  # type: ignore[no-untyped-def]
    first, second = _add(sessions, 2)
    with session_scope(sessions) as session:
        catalog.claim_next(session=session)
        catalog.claim_next(session=session)
        catalog.get_video(first, session=session).attempts = 3  # over max_attempts: interruptions do not count
        catalog.get_video(second, session=session).interruptions = 2
    with session_scope(sessions) as session:
        recovery = catalog.recover_interrupted(session=session, max_interruptions=3)
    assert recovery.requeued == [first] and recovery.failed == [second]
    with session_scope(sessions) as session:
        requeued = catalog.get_video(first, session=session)
        assert (requeued.status, requeued.interruptions, catalog.own_failures(requeued)) == ("queued", 1, 2)
        failed = catalog.get_video(second, session=session)
        assert failed.status == "failed" and failed.interruptions == 3
        assert failed.failure_reason.startswith("indexing was interrupted (the process stopped mid-job) 3 times")


def test_reindex_only_from_ready_or_failed_with_a_fresh_start(sessions) -> None:  # type: ignore[no-untyped-def]
    ready, failed, queued = _add(sessions, 3)
    with session_scope(sessions) as session:
        for _ in range(2):
            catalog.claim_next(session=session)
        assert catalog.mark_ready(ready, session=session, duration=1.0, fps=1.0, frames_indexed=1, checkpoint="a")
        assert catalog.mark_failed(failed, "broken", session=session)
    with session_scope(sessions) as session:
        assert sorted(catalog.reindexable_ids(session=session)) == [ready, failed]
        assert catalog.reindex(ready, session=session) and catalog.reindex(failed, session=session)
        assert not catalog.reindex(queued, session=session)
        for video_id in (ready, failed):
            video = catalog.get_video(video_id, session=session)
            assert (video.status, video.attempts, video.interruptions, video.failure_reason) == ("queued", 0, 0, None)


def test_videos_of_another_checkpoint_refuse_the_start(sessions) -> None:  # type: ignore[no-untyped-def]
    first, second, third = _add(sessions, 3)
    with session_scope(sessions) as session:
        for _ in range(3):
            catalog.claim_next(session=session)
        catalog.mark_ready(first, session=session, duration=1.0, fps=1.0, frames_indexed=1, checkpoint="aaaa")
        catalog.mark_ready(second, session=session, duration=1.0, fps=1.0, frames_indexed=1)  # no fingerprint
        catalog.mark_ready(third, session=session, duration=1.0, fps=1.0, frames_indexed=1, checkpoint="bbbb")
    with session_scope(sessions) as session:
        with pytest.raises(catalog.CheckpointMismatch, match=r"\(1 with bbbb\).*\(aaaa\).*hapvr reindex --all"):
            catalog.require_checkpoint("aaaa", session=session)
        catalog.reindex(third, session=session)
        catalog.require_checkpoint("aaaa", session=session)  # queued again: nothing stale is ready


def test_mark_ready_only_from_processing(sessions) -> None:  # type: ignore[no-untyped-def]
    (video_id,) = _add(sessions, 1)
    with session_scope(sessions) as session:
        assert not catalog.mark_ready(video_id, session=session, duration=1.0, fps=25.0, frames_indexed=1)
        catalog.claim_next(session=session)
        assert catalog.mark_ready(video_id, session=session, duration=1.0, fps=25.0, frames_indexed=1)
        video = catalog.get_video(video_id, session=session)
        assert video.status == "ready" and video.indexed_at is not None and video.indexed_at.tzinfo is not None
