"""A `hapvr worker` process of the deployed-mode tests: the real rq worker, light components.

Settings come from the environment (HAPVR_*), as in a container. HAPVR_TEST_EMBED_DELAY_S makes
each job slow enough for a test to kill the worker in the middle of it.
"""

from __future__ import annotations

import os
import sys
import time

from indexer.commands.options import configure_logging
from indexer.redis_worker import run_worker
from indexer.settings import Settings
from tests.app.apptools import light_components


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
    code = run_worker(settings, burst="--burst" in sys.argv, components_factory=slow_components).exit_code
    # A worker process never loads the web framework (exit code 3 tells the test it did).
    web = sorted(name for name in sys.modules if name.split(".")[0] in ("fastapi", "starlette"))
    if web:
        print(f"worker imported the web framework: {web}", file=sys.stderr)
    sys.exit(code or (3 if web else 0))
