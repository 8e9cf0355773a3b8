"""`hapvr worker`: index queued videos without serving the API.

In the embedded mode the queue is the catalog, so this drains the jobs of a data directory
that no `hapvr serve` holds (after a bulk load, or to finish work before serving). `--burst`
returns when the queue is empty, with a non-zero exit code if any job failed. In the deployed
mode (HAPVR_REDIS_URL set) it runs rq workers on the Redis queue instead (app.redis_queue), as
many processes as `--workers`, on any number of machines.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from app.commands.serve import configure_logging, overrides


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


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from app.runtime import DataDirLocked, Runtime
    from app.settings import Settings
    from app.worker import WorkerPool

    settings = Settings(**overrides(args, ("data_dir", "workers", "checkpoint")))
    configure_logging(settings.log_level)
    log = logging.getLogger("hapvr.worker")
    if settings.deployed:
        return _deployed(settings, burst=args.burst)
    runtime = Runtime(settings)
    try:
        runtime.open()
    except DataDirLocked as error:
        log.error("%s", error)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threads = max(1, settings.workers)
    try:
        runtime.load(start_workers=False)
        if args.burst:
            outcomes = _burst(runtime, threads, stop)
        else:
            pool = WorkerPool(runtime.queue, runtime.run_job, threads)
            pool.start()
            while not stop.wait(1.0):
                pass
            pool.stop()
            outcomes = pool.outcomes
    finally:
        runtime.close()
    log.info("worker finished: %s", dict(outcomes) or "no jobs")
    print(" ".join(f"{name}={count}" for name, count in sorted(outcomes.items())) or "no jobs")
    return 1 if outcomes.get("failed") else 0


def _burst(runtime, threads: int, stop) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Drain the queue with `threads` threads; returns outcome counts."""
    import threading

    from app.worker import drain

    results: list[Counter[str]] = []
    pool = [
        threading.Thread(target=lambda: results.append(drain(runtime.queue, runtime.run_job, should_stop=stop.is_set)))
        for _ in range(threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(results, Counter())


def _deployed(settings, *, burst: bool) -> int:  # type: ignore[no-untyped-def]
    """Deployed mode: rq workers on the Redis queue, one process each (`--workers N` starts N)."""
    import multiprocessing

    from app.redis_queue import run_worker

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


def _deployed_child(settings, burst: bool) -> None:  # type: ignore[no-untyped-def]
    import sys

    from app.redis_queue import run_worker

    configure_logging(settings.log_level)
    sys.exit(run_worker(settings, burst=burst).exit_code)
