"""`hapvr duplicates`: groups of videos sharing footage, as CSV or JSON, from a running service
(--api) or straight from a catalog (--data-dir / --database-url; no service needed, nothing loaded
but the catalog)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from app.commands.client import ClientError, add_api_flag, connect
from indexer.commands.options import CATALOG_FLAGS, add_catalog_flags, overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "duplicates",
        help="groups of videos connected by matches, as CSV or JSON",
        description="Export the duplicate groups (connected components of the match graph) from the service at "
        "--api, or from the catalog of --data-dir / --database-url directly.",
    )
    threshold = parser.add_mutually_exclusive_group()
    threshold.add_argument("--min-score", type=float, help="matches scoring at least this (0-1)")
    threshold.add_argument(
        "--tier",
        choices=("duplicate", "partial", "related"),
        help="matches of this tier or stronger (default HAPVR_DUPLICATES_TIER, partial)",
    )
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (one row per video) or json")
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    add_api_flag(parser, required=False)
    add_catalog_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    direct = args.data_dir is not None or args.database_url is not None
    if direct and args.api:
        print("hapvr duplicates: error: --api, or --data-dir / --database-url, not both", file=sys.stderr)
        return 2
    try:
        text = from_catalog(args) if direct else from_service(args)
    except (ClientError, httpx.HTTPError) as error:
        print(f"hapvr duplicates: error: {error}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def from_service(args: argparse.Namespace) -> str:
    params = {"format": args.format}
    if args.min_score is not None:
        params["min_score"] = str(args.min_score)
    if args.tier is not None:
        params["tier"] = args.tier
    with connect(args.api) as client:
        response = client.get("/duplicates", params=params)
    if not response.is_success:
        raise ClientError(f"{response.status_code}: {response.text.strip()[:300]}")
    return response.text


def from_catalog(args: argparse.Namespace) -> str:
    from app.routes.duplicates import as_csv, find_groups
    from indexer.db import make_engine, make_session_factory, migrate, session_scope
    from indexer.settings import Settings

    settings = Settings(**overrides(args, CATALOG_FLAGS))
    engine = make_engine(settings.catalog_url)
    try:
        migrate(engine)
        tier = args.tier
        if args.min_score is None and tier is None:
            tier = settings.duplicates_tier
        with session_scope(make_session_factory(engine)) as session:
            result = find_groups(session, args.min_score, tier)
    finally:
        engine.dispose()
    return as_csv(result) if args.format == "csv" else result.model_dump_json(indent=2) + "\n"
