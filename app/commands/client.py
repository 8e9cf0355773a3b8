"""What the client commands (`hapvr ingest`, `search`, `duplicates`) share: a connection to a
running service, its key, and errors turned into one line for the terminal."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import httpx

from indexer.settings import Settings

# Seconds for a connection and for one answer; an upload may take longer (its body is streamed).
TIMEOUT = httpx.Timeout(30.0, write=None, read=600.0)
CHUNK = 1024 * 1024


class ClientError(RuntimeError):
    """A refusal or failure the user should read: `str()` is one line."""


def add_api_flag(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--api",
        metavar="URL",
        required=required,
        help="the running service (HAPVR_API_URL); its key comes from HAPVR_API_KEY",
    )


def connect(api: str | None) -> httpx.Client:
    """A client for the service at `api` (else HAPVR_API_URL), sending HAPVR_API_KEY when set."""
    settings = Settings()
    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    return httpx.Client(base_url=(api or settings.api_url).rstrip("/"), headers=headers, timeout=TIMEOUT)


def answer(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer; ClientError with the service's `detail` otherwise."""
    if response.is_success:
        return response.json()
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text.strip()[:200]
    raise ClientError(f"{response.status_code}: {detail}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
