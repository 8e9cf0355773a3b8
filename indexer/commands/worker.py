"""`hapvr worker`: index queued videos without serving the API.

In the embedded mode the queue is the catalog, so this drains the jobs of a data directory
that no `hapvr serve` holds (after a bulk load, or to finish work before serving). `--burst`
returns when the queue is empty, with a non-zero exit code if any job failed. In the deployed
mode (HAPVR_REDIS_URL set) it runs rq workers on the Redis queue instead (indexer.redis_queue), as
many processes as `--workers`, on any number of machines.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.commands.options import configure_logging, overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run indexer workers over the queued videos",
        description="Index queued videos. Flags override HAPVR_* settings.",
    )
    parser.add_argument("--data-dir", type=Path, help="the service's data directory (HAPVR_DATA_DIR)")
    parser.add_argument("--workers", type=int, help="indexer threads (HAPVR_WORKERS, default 1)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (HAPVR_CHECKPOINT)")
    parser.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    parser.set_defaults(func=run)


if TYPE_CHECKING:
    from indexer.settings import Settings


def run(args: argparse.Namespace) -> int:
    from indexer.backend import Backend, DataDirLocked
    from indexer.catalog import CheckpointMismatch
    from indexer.settings import Settings
    from indexer.worker import WorkerPool, drain_in_threads

    settings = Settings(**overrides(args, ("data_dir", "workers", "checkpoint")))
    configure_logging(settings.log_level)
    log = logging.getLogger("hapvr.worker")
    try:
        if settings.deployed:
            return _deployed(settings, burst=args.burst)
        backend = Backend(settings)
        backend.open()
    except (DataDirLocked, CheckpointMismatch) as error:
        log.error("%s", error)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threads = max(1, settings.workers)
    queue = backend.catalog_queue
    assert queue is not None  # the embedded mode's queue
    try:
        backend.load(start_workers=False)
        if args.burst:
            outcomes = drain_in_threads(queue, backend.run_job, threads, should_stop=stop.is_set)
        else:
            pool = WorkerPool(queue, backend.run_job, threads)
            pool.start()
            while not stop.wait(1.0):
                pass
            pool.stop()
            outcomes = pool.outcomes
    finally:
        backend.close()
    log.info("worker finished: %s", dict(outcomes) or "no jobs")
    print(" ".join(f"{name}={count}" for name, count in sorted(outcomes.items())) or "no jobs")
    return 1 if outcomes.get("failed") else 0


def _deployed(settings: Settings, *, burst: bool) -> int:
    """Deployed mode: rq workers on the Redis queue, one process each (`--workers N` starts N)."""
    import multiprocessing

    from indexer.redis_worker import run_worker

    if settings.workers <= 1:
        return run_worker(settings, burst=burst).exit_code
    context = multiprocessing.get_context("spawn")  # no fork of a loaded model or open connections
    processes = [
        context.Process(target=_deployed_child, args=(settings, burst), name=f"hapvr-worker-{number}")
        for number in range(settings.workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return max((process.exitcode or 0) for process in processes)


def _deployed_child(settings: Settings, burst: bool) -> None:
    from indexer.catalog import CheckpointMismatch
    from indexer.redis_worker import run_worker

    configure_logging(settings.log_level)
    try:
        sys.exit(run_worker(settings, burst=burst).exit_code)
    except CheckpointMismatch as error:
        logging.getLogger("hapvr.worker").error("%s", error)
        sys.exit(2)
