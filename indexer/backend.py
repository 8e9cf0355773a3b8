"""One running service instance: everything built from the settings, wired in one place.

Start-up has a fast half and a slow half. `open()` (data-directory lock, migrations, the
checkpoint check, crash recovery of the job queue and of the upload store) runs before the API
answers. `load()` (model, saved index, reconciliation with the catalog and the feature store,
then the worker threads) runs in the background, so /healthz answers at once and /readyz (and
every upload) says 503 until the index is loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from indexer import catalog
from indexer.components import Components, build_components
from indexer.db import make_engine, make_session_factory, migrate, session_scope
from indexer.errors import IndexUnavailable, NotReady
from indexer.graph_updater import GraphUpdater
from indexer.ingest import Ingest
from indexer.jobs import JobContext, index_video
from indexer.library import Library, ReconcileReport
from indexer.metrics import Metrics
from indexer.queue import CatalogQueue, JobPublisher
from indexer.search_service import SearchLimits, SearchService
from indexer.settings import Settings
from indexer.thumbnails import Thumbnails
from indexer.upload_store import UploadStore
from indexer.worker import WorkerPool

if TYPE_CHECKING:
    # Redis is only needed in the deployed mode.
    from indexer.index_sync import IndexSync
    from indexer.redis_queue import RedisQueue

log = logging.getLogger(__name__)

ComponentsFactory = Callable[[Settings], Components]

# Seconds `close()` waits for running jobs before leaving them to the next start's recovery.
SHUTDOWN_GRACE_S = 30.0
# Seconds an upload or scratch file must have lain unchanged before a deployed replica's start-up
# sweeps it as an orphan: other replicas share the volume and may be in the middle of an upload
# (committing a file and inserting its row take milliseconds; an hour leaves no doubt).
DEPLOYED_ORPHAN_AGE_S = 3600.0
# Seconds between two start-up attempts while the vector index's server (Milvus) is unreachable.
LOAD_RETRY_S = 2.0


class DataDirLocked(RuntimeError):
    """Another process already serves this data directory."""


class Backend:
    def __init__(self, settings: Settings, components_factory: ComponentsFactory = build_components) -> None:
        self.settings = settings
        self._factory = components_factory
        self.metrics = Metrics()
        self.engine = make_engine(settings.catalog_url)
        self.sessions = make_session_factory(self.engine)
        self.uploads = UploadStore(settings.uploads_dir, settings.tmp_dir)
        self.thumbnails = Thumbnails(settings.thumbnails_dir)
        # Deployed: jobs go to Redis (workers in other processes); embedded: the catalog is the queue.
        self.redis_queue: RedisQueue | None = _redis_queue(settings) if settings.deployed else None
        self.catalog_queue: CatalogQueue | None = None if settings.deployed else CatalogQueue(self.sessions)
        self.queue: JobPublisher = self.redis_queue or self.catalog_queue  # type: ignore[assignment]
        self.index_sync: IndexSync | None = None
        self.ingest = Ingest(sessions=self.sessions, uploads=self.uploads, queue=self.queue, metrics=self.metrics)
        self.search = SearchService(
            sessions=self.sessions,
            metrics=self.metrics,
            limits=SearchLimits(candidates=settings.candidates, max_k=settings.max_k),
            threads=settings.search_threads,
        )
        self.components: Components | None = None
        self.library: Library | None = None
        self.pool: WorkerPool | None = None
        self.graph = GraphUpdater(
            sessions=self.sessions,
            search=self.search,
            library=self.require_library,
            neighbours=settings.graph_neighbours,
            min_score=settings.graph_min_score,
        )
        self.reconcile_report: ReconcileReport | None = None
        self.startup_error: str | None = None
        self._ready = threading.Event()
        self._loader: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock_file: IO[str] | None = None
        self.metrics.watch_state(self._status_counts, self._index_size)

    # -- life cycle ----------------------------------------------------------------------------
    def open(self) -> None:
        """The fast half of start-up: the catalog is usable after it (uploads wait for `load()`).

        Raises catalog.CheckpointMismatch (a refusal to start) when ready videos were indexed with
        another checkpoint than the configured one.
        """
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.settings.deployed:
            self._lock_data_dir()  # deployed replicas share the data volume by design
        try:
            self._open_catalog()
        except BaseException:
            self._unlock_data_dir()  # a refused start leaves the directory to the next try
            raise

    def _open_catalog(self) -> None:
        from model.checkpoint import fingerprint

        migrate(self.engine)
        with session_scope(self.sessions) as session:
            catalog.require_checkpoint(fingerprint(self.settings.checkpoint), session=session)
        # Embedded, this process holds the data directory and accepts nothing yet: any leftover is an orphan.
        min_age = DEPLOYED_ORPHAN_AGE_S if self.settings.deployed else 0.0
        self.uploads.prepare(min_age_s=min_age)
        orphans = self.ingest.remove_orphan_uploads(min_age_s=min_age)
        if orphans:
            log.warning("removed %d uploaded files no video refers to (left by a crash)", orphans)
        if self.settings.deployed:
            self._recover_deployed()
            return
        with session_scope(self.sessions) as session:
            recovery = catalog.recover_interrupted(session=session, max_interruptions=self.settings.max_interruptions)
        if recovery.requeued or recovery.failed:
            log.warning(
                "recovered interrupted jobs (not counted as attempts): %d re-queued %s, %d failed %s",
                len(recovery.requeued),
                recovery.requeued,
                len(recovery.failed),
                recovery.failed,
            )

    def load(self, *, start_workers: bool = True) -> None:
        """The slow half: model, index, reconciliation, then workers. Sets ready when done."""
        try:
            components = self._factory(self.settings)
            library = Library(components, self.settings.index_dir / "frames.faiss")
            loaded = library.load()
            with session_scope(self.sessions) as session:
                ready = catalog.ids_with_status(catalog.READY, session=session)
            if self.settings.deployed and self.settings.vector_index == "milvus":
                # Workers write the shared collection themselves; only a new one is filled here.
                added, removed = ([], []) if loaded else library.sync_index(ready)
                report = ReconcileReport(index_added=added, index_removed=removed, index_rebuilt=not loaded)
            elif self.settings.deployed:
                # Workers elsewhere own the store and the jobs: only the index is brought in line.
                added, removed = library.sync_index(ready)
                report = ReconcileReport(index_added=added, index_removed=removed, index_rebuilt=not loaded)
            else:
                report = library.reconcile(ready, loaded=loaded)
            for video_id in report.missing_features:
                with session_scope(self.sessions) as session:
                    catalog.requeue(video_id, session=session, reason="features were missing at start-up; re-indexing")
            if report.repaired:
                log.warning("reconciled index and store with the catalog: %s", report)
            self.components, self.library, self.reconcile_report = components, library, report
            self.ingest.set_probe(components.probe)
        except Exception as error:
            self.startup_error = f"{type(error).__name__}: {error}"
            log.exception("start-up failed; the service will not become ready")
            raise
        self.startup_error = None
        self._ready.set()
        if start_workers:  # serving: `hapvr worker` leaves the graph to the service
            self.graph.start()
        if self.settings.deployed and self.settings.vector_index == "faiss":
            # Each replica's FAISS index follows the workers through Redis events; a Milvus
            # collection is shared, so there is nothing to follow.
            from indexer.index_sync import IndexSync

            assert self.settings.redis_url is not None
            self.index_sync = IndexSync(self.settings.redis_url, self.settings.redis_prefix, self.sessions, library)
            self.index_sync.start()
        elif start_workers and self.settings.workers > 0:
            assert self.catalog_queue is not None
            self.pool = WorkerPool(self.catalog_queue, self.run_job, self.settings.workers)
            self.pool.start()
        log.info(
            "ready: %d videos indexed (%s)",
            len(ready) - len(report.missing_features),
            components.description or "model loaded",
        )

    def start(self) -> None:
        """open() now, load() in the background (what `hapvr serve` does)."""
        self.open()
        self._loader = threading.Thread(target=self._load_quietly, name="hapvr-startup", daemon=True)
        self._loader.start()

    def _load_quietly(self) -> None:
        while True:
            try:
                self.load()
                return
            except IndexUnavailable:
                # A vector index server that is down now may come back: keep trying (readyz says why).
                if self._closing.wait(LOAD_RETRY_S):
                    return
            except Exception:  # noqa: BLE001 - recorded in startup_error, reported by /readyz
                return

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def close(self) -> None:
        self._closing.set()
        if self._loader is not None:
            self._loader.join(SHUTDOWN_GRACE_S)
        if self.index_sync is not None:
            self.index_sync.stop()
            self.index_sync = None
        if self.pool is not None:
            self.pool.stop(SHUTDOWN_GRACE_S)
            self.pool = None
        self.graph.stop()
        if self.library is not None:
            try:
                self.library.persist()
            except Exception:
                log.exception("could not save the index at shutdown")
        self._ready.clear()
        self.search.close()
        self.engine.dispose()
        self._unlock_data_dir()

    # -- deployed mode ---------------------------------------------------------------------------
    def _recover_deployed(self) -> None:
        """Enqueue every queued row: Redis may have lost its queue. Interrupted (`processing`)
        jobs are left to the workers' reapers, which know whether their worker is still alive."""
        assert self.redis_queue is not None
        count = self.redis_queue.enqueue_queued(self.sessions)
        if count:
            log.info("enqueued %d queued videos from the catalog", count)

    # -- work ----------------------------------------------------------------------------------
    def job_context(self) -> JobContext:
        library, components = self.library, self.components
        if library is None or components is None:
            raise RuntimeError("jobs run only after load()")
        return JobContext(
            sessions=self.sessions,
            uploads=self.uploads,
            embedder=components.embedder,
            features=library,
            metrics=self.metrics,
            max_attempts=self.settings.max_attempts,
        )

    def run_job(self, video_id: int) -> str:
        outcome = index_video(video_id, ctx=self.job_context())
        if outcome == "ready":
            self.graph.wake()
        return outcome

    # -- state ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def require_library(self) -> Library:
        if self.library is None or not self._ready.is_set():
            if self.startup_error:
                raise NotReady(f"the service failed to start: {self.startup_error}")
            raise NotReady("the index is still loading; retry shortly")
        return self.library

    def require_components(self) -> Components:
        self.require_library()
        assert self.components is not None
        return self.components

    def _status_counts(self) -> dict[str, int]:
        with session_scope(self.sessions) as session:
            return catalog.count_by_status(session=session)

    def _index_size(self) -> tuple[int, int] | None:
        return self.library.size() if self.library is not None else None

    # -- one process per data directory (embedded mode) ----------------------------------------
    def _lock_data_dir(self) -> None:
        """The in-memory index belongs to one process: refuse a second on the same directory."""
        import fcntl

        path: Path = self.settings.data_dir / ".lock"
        handle = open(path, "a+")  # noqa: SIM115 - held for the life of the runtime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise DataDirLocked(
                f"{self.settings.data_dir} is in use by {owner}; stop it or choose another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_file = handle

    def _unlock_data_dir(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _redis_queue(settings: Settings) -> RedisQueue:
    from indexer.redis_queue import RedisQueue  # redis and rq load only in the deployed mode

    return RedisQueue.from_settings(settings)
