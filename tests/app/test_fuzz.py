"""Schemathesis against the live app, every check, on both catalogs: no 500, every answer as the
schema declares it, every schema-valid request accepted and every invalid one refused.

Uploads carry real videos (tests/app/fuzz_hooks.py), so titles, external ids and metadata reach
the catalog. Bounded: a number of examples per operation and a time budget per run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.main import create_app
from indexer.settings import Settings
from tests.app.apptools import light_components
from tests.app.catalogs import CATALOGS, catalog_settings, postgres_down
from tests.app.live_server import LiveServer

# About a minute per catalog on a loaded 2-core box: a long run (`make test-slow`).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 30
MAX_TIME_S = 120


@pytest.fixture(params=CATALOGS)
def live_url(request: pytest.FixtureRequest, tmp_path: Path, model_cache: Path) -> Iterator[str]:
    if request.param == "postgresql" and postgres_down():
        pytest.skip(postgres_down() or "")
    with catalog_settings(request.param) as catalog:
        # Embedded: an indexer thread, so searches by video find ready videos. Deployed: no rq
        # worker (uploads stay queued); the catalog is what this run is about.
        workers = 1 if request.param == "sqlite" else 0
        settings = Settings(data_dir=tmp_path / "data", cache_dir=model_cache, workers=workers, **catalog)  # type: ignore[arg-type]
        app = create_app(settings, light_components)
        with LiveServer(app) as server:
            assert app.state.backend.wait_ready(60), app.state.backend.startup_error
            yield server.url


# A multipart form is sent as text: a generated "negative" value for a form field (a JSON object
# where the schema wants some other shape, a number for text, ...) often reaches the server as a
# valid form, and schemathesis cannot re-read the form it sent to tell (its validator takes no
# bytes). So negative-data rejection is judged on every operation but the two that take forms;
# their refusals are tested directly (tests/app/test_inputs*.py, test_upload_bad_input.py).
CONFIG = """
[[operations]]
include-path-regex = "^/(videos|search)$"
include-method = "POST"
checks.negative_data_rejection.enabled = false
"""


def test_schemathesis_finds_nothing(live_url: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{live_url}/openapi.json",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME_S),
        "--request-timeout",
        "30",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.app.fuzz_hooks", "PYTHONPATH": str(ROOT)}
    # Its working directory takes the example database and reports, not the repository.
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=MAX_TIME_S + 120)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12_000:]
    assert re.search(r"\d+ generated, \d+ passed", output), output[-4_000:]
