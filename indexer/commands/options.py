"""What every `hapvr` subcommand shares: flags turned into settings, and logging."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

# The settings `add_catalog_flags` sets (for `overrides`).
CATALOG_FLAGS = ("data_dir", "database_url")


def add_catalog_flags(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --database-url: the catalog a command works on."""
    parser.add_argument("--data-dir", type=Path, help="data directory holding the default SQLite catalog")
    parser.add_argument("--database-url", help="SQLAlchemy URL of the catalog (HAPVR_DATABASE_URL)")


# Library chatter at start-up that says nothing about this service. FAISS's loader tries its AVX
# builds first and logs each miss with a ModuleNotFoundError: faiss-cpu names that logger
# faiss.loader, faiss-gpu-cu12 (the CUDA image, which ships no AVX build) faiss._loader.
QUIET_LOGGERS = ("alembic.runtime.plugins", "faiss.loader", "faiss._loader")


def overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The flags the user actually gave, as settings keyword arguments."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
