"""`hapvr search FILE | --id N`: near duplicates from a running service, best first."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from app.commands.client import ClientError, add_api_flag, answer, connect


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="videos of a running service that share footage with a file or an indexed video",
        description="Search the service at --api with a clip (uploaded, searched with, not stored) or a video id.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("file", nargs="?", type=Path, help="a video file to search with")
    which.add_argument("--id", type=int, dest="video_id", help="an indexed video to search with")
    parser.add_argument("--k", type=int, help="results wanted (the service's default otherwise)")
    parser.add_argument("--min-score", type=float, help="drop results scoring below")
    parser.add_argument("--json", action="store_true", help="print the service's JSON answer")
    add_api_flag(parser, required=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = {name: value for name, value in (("k", args.k), ("min_score", args.min_score)) if value is not None}
    try:
        with connect(args.api) as client:
            if args.video_id is not None:
                result = answer(client.get("/search", params={"video_id": args.video_id, **params}))
            else:
                with open(args.file, "rb") as handle:
                    files = {"file": (args.file.name, handle, "application/octet-stream")}
                    result = answer(client.post("/search", params=params, files=files))
    except (ClientError, OSError, httpx.HTTPError) as error:
        print(f"hapvr search: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_hits(result)
    return 0


def print_hits(result: dict[str, Any]) -> None:
    if not result["data"]:
        print("no match")
    for hit in result["data"]:
        tier = f"  {hit['tier']}" if hit.get("tier") else ""
        name = hit.get("title") or hit.get("external_id") or ""
        print(f"{hit['rank']:3d}. video {hit['video_id']:<6d} score {hit['score']:.4f}{tier}  {name}")
        for s in hit["segments"]:
            print(
                f"       {s['query_start']:7.2f}-{s['query_end']:<7.2f} in the query  ~  "
                f"{s['target_start']:7.2f}-{s['target_end']:<7.2f} in video {hit['video_id']}"
            )
