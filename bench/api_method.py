"""The `api` method of bench/quality.py: the service measured end to end, as a user meets it.

A fresh `hapvr serve` (embedded mode, default settings, a temporary data directory) receives
every dataset video by `POST /videos`; once all are indexed, each benchmark query is one
`GET /search?video_id=ID&k=K` with K the database size, and the returned scores fill that
query's row. Videos a search does not return score -inf, below every returned score, so they
rank last and their ties count against us (model/metrics.py).

The service runs at its defaults: inherited HAPVR_* variables (and DATABASE_URL / REDIS_URL,
which would point it at a shared catalog) are dropped, except HAPVR_CACHE_DIR, where the
encoder's ONNX export is kept between runs. The search re-ranks its top C FAISS candidates
exactly (HAPVR_CANDIDATES) and raises C to k, so asking for the whole database re-ranks every
video the candidate stage proposes (those among some query frame's nearest indexed frames)
and nothing else; the notes say how many came back per query.
"""

from __future__ import annotations

import mimetypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300.0  # torch and faiss imports plus a first ONNX export, on a loaded box
STALL_TIMEOUT_S = 300.0  # no video finished indexing for this long: the service is stuck
STOP_TIMEOUT_S = 60.0
POLL_S = 0.2
FLOOR = -np.inf
# Variables that would move the service off its defaults or onto someone else's storage.
FOREIGN_ENV = ("DATABASE_URL", "REDIS_URL")


class ServeError(RuntimeError):
    """The service did not start, refused a request, or failed to index; carries its log tail."""


@dataclass
class ApiResult:
    """The api method's outcome, in the shape bench.quality's MethodRun wants."""

    scores: np.ndarray  # [videos, videos], row = query; non-query rows stay at FLOOR
    embed_s: float  # first upload to last video indexed
    score_s: float  # all the searches, one after another
    notes: list[str] = field(default_factory=list)


@dataclass
class ServeProcess:
    """A running `hapvr serve` and a client bound to it."""

    process: subprocess.Popen
    client: httpx.Client
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.is_file() else ""

    def fail(self, message: str) -> ServeError:
        return ServeError(f"{message}\n--- service log (tail) ---\n{self.log_tail()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_environment() -> dict[str, str]:
    """This process's environment minus every service setting, plus the shared model cache."""
    from model.settings import CACHE_ENV, ModelSettings

    env = {k: v for k, v in os.environ.items() if not k.startswith("HAPVR_") and k not in FOREIGN_ENV}
    env[CACHE_ENV] = str(ModelSettings().model_cache_dir)
    return env


@contextmanager
def running_service(
    data_dir: Path, checkpoint: Path | None = None, *, settings: dict[str, str] | None = None, code: Path = REPO
) -> Iterator[ServeProcess]:
    """`hapvr serve` on a free loopback port, ready; stopped on exit, whatever happened inside.

    `settings` are HAPVR_* variables to run with; `code` is the source tree to serve (another
    revision's, to compare before and after a change).
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if checkpoint is not None:
        command += ["--checkpoint", str(Path(checkpoint).resolve())]
    log_path = data_dir.parent / "service.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            env={**service_environment(), **(settings or {})},
            cwd=code,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    service = ServeProcess(process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120), log_path)
    try:
        wait_ready(service)
        yield service
    except httpx.HTTPError as error:  # a dropped connection or a timeout: the log says why
        raise service.fail(f"request failed: {error!r}") from error
    finally:
        service.client.close()
        stop(process)


def wait_ready(service: ServeProcess, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise service.fail(f"the service exited with code {service.process.returncode} before it was ready")
        try:
            if service.client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(POLL_S)
    raise service.fail(f"the service was not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (uvicorn stops the workers and saves the index), SIGKILL if that hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def upload(service: ServeProcess, path: Path) -> int:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    with open(path, "rb") as handle:
        response = service.client.post("/videos", files={"file": (path.name, handle, content_type)})
    if response.status_code not in (200, 202):  # 200: the same bytes were already uploaded
        raise service.fail(f"POST /videos {path.name}: {response.status_code} {response.text[:300]}")
    return int(response.json()["id"])


def wait_indexed(service: ServeProcess, video_ids: Sequence[int], timeout: float = STALL_TIMEOUT_S) -> dict[int, str]:
    """Final status ("ready" or "failed") of each video, polled oldest first.

    The queue is first in, first out, so waiting on the oldest unfinished upload costs one
    request per poll instead of one per video.
    """
    states: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    for video_id in dict.fromkeys(video_ids):
        while True:
            response = service.client.get(f"/videos/{video_id}")
            if response.status_code != 200:
                raise service.fail(f"GET /videos/{video_id}: {response.status_code} {response.text[:300]}")
            status = response.json()["status"]
            if status in ("ready", "failed"):
                states[video_id] = status
                deadline = time.monotonic() + timeout
                break
            if time.monotonic() > deadline or service.process.poll() is not None:
                raise service.fail(f"video {video_id} still {status}: indexing stalled")
            time.sleep(POLL_S)
    return states


def search_scores(service: ServeProcess, video_id: int, k: int) -> dict[int, float]:
    """Service id -> score of every hit of one search by an indexed video (no score floor)."""
    response = service.client.get("/search", params={"video_id": video_id, "k": k})
    if response.status_code != 200:
        raise service.fail(f"GET /search?video_id={video_id}: {response.status_code} {response.text[:300]}")
    return {int(hit["video_id"]): float(hit["score"]) for hit in response.json()["data"]}


def served_model(service: ServeProcess) -> str | None:
    """What the service says it loaded: the description in its "ready: ..." log line."""
    found = re.search(r"ready: \d+ videos indexed \((.*)\)", service.log_path.read_text(errors="replace"))
    return found.group(1) if found else None


def service_defaults() -> tuple[int, int]:
    """(C, max k) of a service started without HAPVR_* settings."""
    from indexer.settings import Settings

    fields = Settings.model_fields
    return int(fields["candidates"].default), int(fields["max_k"].default)


def ingest(service: ServeProcess, paths: Sequence[Path]) -> tuple[list[int], dict[int, str]]:
    """Upload every file, then wait until the service has indexed (or failed) each one."""
    ids = [upload(service, path) for path in paths]
    return ids, wait_indexed(service, ids)


@dataclass
class Searches:
    scores: np.ndarray
    returned: list[int]  # hits per search
    latencies: list[float]  # seconds per search, client side


def search_all(
    service: ServeProcess, ids: Sequence[int], states: dict[int, str], queries: Sequence[int], k: int
) -> Searches:
    """Each query's row filled from its search; columns found through the dataset -> id map."""
    columns: dict[int, list[int]] = {}
    for index, video_id in enumerate(ids):
        columns.setdefault(video_id, []).append(index)
    out = Searches(np.full((len(ids), len(ids)), FLOOR), [], [])
    for row in queries:
        if states[ids[row]] != "ready":
            continue  # a video that failed to index cannot be searched with: its row stays at FLOOR
        started = time.monotonic()
        hits = search_scores(service, ids[row], k)
        out.latencies.append(time.monotonic() - started)
        out.returned.append(len(hits))
        for video_id, score in hits.items():
            out.scores[row, columns[video_id]] = score
    return out


def describe(
    names: Sequence[str],
    ids: Sequence[int],
    states: dict[int, str],
    searches: Searches,
    checkpoint: Path | None,
    model: str | None,
    candidates: int,
    k: int,
) -> list[str]:
    """The notes of the run: the model served, the candidate setting, what the searches returned."""
    from model.checkpoint import DEFAULT_CHECKPOINT

    served = f"--checkpoint {checkpoint}" if checkpoint is not None else f"its shipped {DEFAULT_CHECKPOINT.name}"
    notes = [f"hapvr serve with {served}" + (f" ({model})" if model else "")]
    if searches.returned:
        notes.append(
            f"service defaults: C={candidates}, raised to k={k} by the search; "
            f"{np.mean(searches.returned):.0f} of {len(names) - 1} videos returned per query (mean; "
            "the others were not re-ranked and score -inf), "
            f"search p50 {np.percentile(searches.latencies, 50) * 1000:.0f} ms, "
            f"p95 {np.percentile(searches.latencies, 95) * 1000:.0f} ms"
        )
    failed = [names[i] for i, video_id in enumerate(ids) if states[video_id] != "ready"]
    if failed:
        notes.append(f"{len(failed)} videos failed to index: {', '.join(failed[:5])}")
    if len(set(ids)) < len(ids):
        notes.append(f"{len(ids) - len(set(ids))} uploads were byte-identical to an earlier one and share its id")
    if k < len(names) - 1:
        notes.append(f"rankings cut at the service's max k ({k})")
    return notes


def run_api(
    names: Sequence[str],
    paths: Sequence[Path],
    queries: Sequence[int],
    checkpoint: Path | None = None,
    log: Callable[[str], None] = print,
) -> ApiResult:
    """Upload `paths`, search with the videos at `queries`; rows and columns by dataset index."""
    candidates, max_k = service_defaults()
    k = min(len(names), max_k)
    with tempfile.TemporaryDirectory(prefix="hapvr-bench-api-") as scratch:
        with running_service(Path(scratch) / "data", checkpoint) as service:
            log(f"api: service ready; uploading {len(paths)} videos")
            started = time.monotonic()
            ids, states = ingest(service, paths)
            embed_s = time.monotonic() - started
            log(f"api: {len(set(ids))} videos indexed in {embed_s:.0f} s; {len(queries)} searches")
            started = time.monotonic()
            searches = search_all(service, ids, states, queries, k)
            score_s = time.monotonic() - started
            model = served_model(service)
    notes = describe(names, ids, states, searches, checkpoint, model, candidates, k)
    return ApiResult(searches.scores, embed_s, score_s, notes)
