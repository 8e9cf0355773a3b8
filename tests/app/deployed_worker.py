"""A `hapvr worker` process of the deployed-mode tests: the real rq worker, light components.

Settings come from the environment (HAPVR_*), as in a container. HAPVR_TEST_EMBED_DELAY_S makes
each job slow enough for a test to kill the worker in the middle of it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apptools import light_components  # noqa: E402

from app.commands.serve import configure_logging  # noqa: E402
from indexer.redis_worker import run_worker  # noqa: E402
from indexer.settings import Settings  # noqa: E402


def slow_components(settings: Settings):  # type: ignore[no-untyped-def]
    components = light_components(settings)
    delay = float(os.environ.get("HAPVR_TEST_EMBED_DELAY_S", "0"))
    embed = components.embedder.embed

    def slow_embed(path):  # type: ignore[no-untyped-def]
        time.sleep(delay)
        return embed(path)

    components.embedder.embed = slow_embed  # type: ignore[method-assign]
    return components


if __name__ == "__main__":
    settings = Settings()
    configure_logging(settings.log_level)
    sys.exit(run_worker(settings, burst="--burst" in sys.argv, components_factory=slow_components).exit_code)
