"""`hapvr ingest PATH...`: upload a collection (files and folders) to a running service, or
catalog it straight into a data directory.

Each file's sha256 is computed here first and files the service already holds are skipped, so
an interrupted run is resumed by running it again. Uploads run `--jobs` at a time; refusals
(413, 415, 422, ...) are collected with the service's reason, and with `--wait` so are videos
whose indexing fails. The exit status is 1 when anything failed.

With --data-dir (no service running on it) the files are checked, stored and queued exactly as
an upload would be (indexer.ingest.Ingest), without loading the model: `hapvr worker --burst` or
the next `hapvr serve` indexes them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.commands.client import ClientError, add_api_flag, answer, connect, sha256_of
from indexer.commands.options import CATALOG_FLAGS, add_catalog_flags, overrides

# Seconds between two looks at the videos being indexed (--wait).
POLL_S = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="upload video files and folders to a running service (skips what it already holds)",
        description="Upload videos to the service at --api. Files whose bytes it already holds are skipped, "
        "so running the same command again resumes an interrupted run.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="video files or folders")
    add_api_flag(parser, required=False)
    add_catalog_flags(parser)
    parser.add_argument("--recursive", "-r", action="store_true", help="also the videos in sub-folders")
    parser.add_argument("--jobs", "-j", type=int, default=2, help="uploads at once (default 2)")
    parser.add_argument("--wait", action="store_true", help="wait until every upload is indexed (or failed)")
    parser.set_defaults(func=run)


@dataclass
class Outcome:
    path: Path
    state: str  # uploaded, stored (already held), failed
    video_id: int | None = None
    reason: str | None = None


def collect(paths: Iterable[Path], *, recursive: bool) -> list[Path]:
    """Files named, and the video files in folders named (sub-folders with `recursive`), sorted, once each."""
    from model.video import VIDEO_SUFFIXES, find_videos

    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            inside = (
                find_videos(path)
                if recursive
                else sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            )
            found.update(dict.fromkeys(p.resolve() for p in inside))
        else:
            found[path.resolve()] = None
    return list(found)


def upload(client: httpx.Client, path: Path) -> Outcome:
    """One file: skipped when its bytes are stored (unless that video failed: it gets another try)."""
    try:
        digest = sha256_of(path)
        held = answer(client.get("/videos", params={"sha256": digest}))["data"]
        if held and held[0]["status"] != "failed":
            return Outcome(path, "stored", held[0]["id"])
        with open(path, "rb") as handle:
            body = answer(client.post("/videos", files={"file": (path.name, handle, "application/octet-stream")}))
        return Outcome(path, "uploaded", body["id"])
    except (ClientError, OSError) as error:
        return Outcome(path, "failed", reason=str(error))
    except httpx.HTTPError as error:  # the service cut the upload off, or went away mid-run
        return Outcome(path, "failed", reason=f"{type(error).__name__}: {error}")


def wait_indexed(client: httpx.Client, outcomes: list[Outcome], progress: Any) -> None:
    """Poll the uploaded videos until each is ready or failed; failures get their reason."""
    waiting = {o.video_id: o for o in outcomes if o.state == "uploaded"}
    progress.reset(total=len(waiting))
    progress.set_description("indexing")
    while waiting:
        for video_id, outcome in list(waiting.items()):
            try:
                video = answer(client.get(f"/videos/{video_id}"))
            except ClientError as error:
                outcome.state, outcome.reason = "failed", str(error)
            else:
                if video["status"] not in ("ready", "failed"):
                    continue
                if video["status"] == "failed":
                    outcome.state, outcome.reason = "failed", f"indexing failed: {video['failure_reason']}"
            del waiting[video_id]
            progress.update(1)
        if waiting:
            time.sleep(POLL_S)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.jobs < 1:
        print("hapvr ingest: error: --jobs must be at least 1", file=sys.stderr)
        return 2
    files = collect(args.paths, recursive=args.recursive)
    missing = [p for p in files if not p.is_file()]
    outcomes = [Outcome(p, "failed", reason="no such file") for p in missing]
    files = [p for p in files if p.is_file()]
    if args.data_dir is not None or args.database_url is not None:
        if args.api or args.wait:
            print(
                "hapvr ingest: error: --data-dir catalogs files for indexing later; no --api or --wait", file=sys.stderr
            )
            return 2
        outcomes.extend(into_catalog(args, files))
        print("queued videos are indexed by `hapvr worker --burst` or the next `hapvr serve` on this data directory")
        return summarise(outcomes)
    with connect(args.api) as client, tqdm(total=len(files), unit="file", desc="uploading") as progress:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for outcome in pool.map(lambda path: upload(client, path), files):
                outcomes.append(outcome)
                progress.update(1)
                progress.set_postfix_str(f"{outcome.state}: {outcome.path.name}"[:60])
        if args.wait:
            wait_indexed(client, outcomes, progress)
    return summarise(outcomes)


def into_catalog(args: argparse.Namespace, files: list[Path]) -> list[Outcome]:
    """Store and queue each file as an upload would be, in the data directory (locked meanwhile)."""
    import shutil

    from tqdm import tqdm

    from indexer.backend import Backend
    from indexer.catalog import VideoDetails
    from indexer.components import make_probe
    from indexer.errors import ServiceError
    from indexer.settings import Settings
    from indexer.upload_store import ReceivedFile

    settings = Settings(**overrides(args, CATALOG_FLAGS))
    backend = Backend(settings)
    backend.open()
    backend.ingest.set_probe(make_probe(settings))
    outcomes = []
    try:
        for path in tqdm(files, unit="file", desc="cataloguing"):
            scratch = backend.uploads.scratch_file()
            try:
                shutil.copyfile(path, scratch)
                received = ReceivedFile(scratch, sha256_of(scratch), scratch.stat().st_size, path.name, None)
                accepted = backend.ingest.accept(received, VideoDetails())
            except (ServiceError, OSError) as error:
                scratch.unlink(missing_ok=True)
                outcomes.append(Outcome(path, "failed", reason=str(error)))
                continue
            state = "stored" if accepted.duplicate else "uploaded"
            outcomes.append(Outcome(path, state, accepted.video.id))
    finally:
        backend.close()
    return outcomes


def summarise(outcomes: list[Outcome]) -> int:
    counts = {state: sum(o.state == state for o in outcomes) for state in ("uploaded", "stored", "failed")}
    print(f"{counts['uploaded']} uploaded, {counts['stored']} already stored, {counts['failed']} failed")
    for outcome in outcomes:
        if outcome.state == "failed":
            print(f"  {outcome.path}: {outcome.reason}")
    return 1 if counts["failed"] else 0
