"""`hapvr serve`: the embedded service (API, catalog, index and indexer workers in one process)."""

from __future__ import annotations

import argparse
from pathlib import Path

from indexer.commands.options import configure_logging, overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the search service (embedded: SQLite, local index, in-process workers)",
        description="Run the REST API with its indexer workers. Flags override HAPVR_* settings.",
    )
    parser.add_argument("--host", help="address to listen on (HAPVR_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (HAPVR_PORT, default 8000)")
    parser.add_argument(
        "--data-dir", type=Path, help="catalog, uploads, features, index (HAPVR_DATA_DIR, default ./data)"
    )
    parser.add_argument("--workers", type=int, help="indexer threads (HAPVR_WORKERS, default 1)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (HAPVR_CHECKPOINT, default: the shipped one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    # Searches and indexing share two cores: idle OpenMP threads must sleep, not spin, or they
    # slow the other side down (bench/results/search.md: p95 3.6 s spinning vs 0.28 s passive
    # on a loaded box). OpenMP reads this once, when torch and faiss load, so set it first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import uvicorn

    from app.main import create_app
    from indexer.settings import Settings

    settings = Settings(**overrides(args, ("host", "port", "data_dir", "workers", "checkpoint")))
    configure_logging(settings.log_level)
    if settings.checkpoint is not None and not settings.checkpoint.is_file():
        # Fail before listening: a service that can never become ready is worse than none.
        logging.getLogger("hapvr").error("checkpoint not found: %s", settings.checkpoint)
        return 2
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0
