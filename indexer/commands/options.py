"""What every `hapvr` subcommand shares: flags turned into settings, and logging."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The flags the user actually gave, as settings keyword arguments."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Library chatter at start-up that says nothing about this service.
    for name in ("alembic.runtime.plugins", "faiss.loader"):
        logging.getLogger(name).setLevel(logging.WARNING)
