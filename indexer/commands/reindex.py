"""`hapvr reindex`: queue videos to be embedded again from their stored uploads.

After a switch of checkpoints (the service refuses to start while ready videos carry another
checkpoint's features), or to retry failed videos. Rows only are changed: a running service's
workers (or `hapvr worker`, or the next `hapvr serve`) do the work; in the deployed mode the
jobs also go to Redis. A video whose stored upload is gone cannot be embedded again: it is
failed with that reason (uploading the file again brings it back), so that no video is left
ready with another checkpoint's features.
"""

from __future__ import annotations

import argparse
import sys

from indexer.commands.options import CATALOG_FLAGS, add_catalog_flags, configure_logging, overrides

# Rows re-queued per transaction by --all (one commit each would cost a disk flush per video).
BATCH = 500


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reindex",
        help="queue videos to be embedded again from their stored uploads",
        description="Queue ready or failed videos for indexing again. Flags override HAPVR_* settings.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID", help="video ids")
    which.add_argument("--all", action="store_true", help="every ready or failed video")
    add_catalog_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from indexer import catalog
    from indexer.db import make_engine, make_session_factory, migrate, session_scope
    from indexer.errors import ServiceError
    from indexer.ingest import UploadMissing, queue_reindex
    from indexer.settings import Settings
    from indexer.upload_store import UploadStore

    settings = Settings(**overrides(args, CATALOG_FLAGS))
    configure_logging(settings.log_level)
    engine = make_engine(settings.catalog_url)
    queued: list[int] = []
    refused = 0
    try:
        migrate(engine)
        sessions = make_session_factory(engine)
        uploads = UploadStore(settings.uploads_dir, settings.tmp_dir)
        if args.all:
            with session_scope(sessions) as session:
                wanted = catalog.reindexable_ids(session=session)
        else:
            wanted = list(dict.fromkeys(args.ids))
        for start in range(0, len(wanted), BATCH):
            with session_scope(sessions) as session:
                for video_id in wanted[start : start + BATCH]:
                    try:
                        queued.append(queue_reindex(video_id, session=session, uploads=uploads).id)
                    except UploadMissing as error:
                        catalog.fail_unindexable(video_id, f"{error.detail} to index it", session=session)
                        print(f"{error.detail} (it is failed until then)", file=sys.stderr)
                        refused += 1
                    except ServiceError as error:
                        print(error.detail, file=sys.stderr)
                        refused += 1
        if settings.deployed and queued:
            from indexer.redis_queue import RedisQueue

            RedisQueue.from_settings(settings).enqueue_many(queued)
    finally:
        engine.dispose()
    print(f"queued {len(queued)} videos for indexing" + (f"; {refused} refused" if refused else ""))
    return 1 if refused else 0
