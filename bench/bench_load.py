"""Loopback load: many clients searching one embedded service at once (shipped model, real library).

A fresh `hapvr serve` indexes the footage cache's source videos (14 files, 5.5 min), then for each
client count C, C asyncio clients (one keep-alive HTTP/1.1 connection each, a minimal client that
costs the shared CPU little) send `GET /search?video_id=ID`
for random indexed videos, back to back, for `--seconds`. A client answered 503 waits what
Retry-After says (as a well-behaved client does) and goes on. Reported per run: answered
searches per second, p50/p95/p99 latency of the answered ones, and the refusals: 503s apart
from other errors (any other status, or a failed connection).

    python -m bench.bench_load [--clients 50 200] [--seconds 20] [--label after]
    python -m bench.bench_load --code DIR --label before   # serve another revision's source tree

`--code` serves another checkout (e.g. `git archive REV | tar -x -C DIR`) with this client,
so a change is measured before and after on the same machine. The client shares the box with
the server; on 2 cores it takes part of the CPU, so compare rows from the same machine only.
Appends rows to bench/results/load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.api_method import REPO, running_service, upload, wait_indexed
from bench.footage import source_videos

RESULTS = Path(__file__).with_name("results") / "load.md"
HEADER = """# Loopback load: concurrent searches by video

`python -m bench.bench_load`: C clients, each one keep-alive connection sending
`GET /search?video_id=ID` back to back for the run's seconds (a 503 waits its Retry-After),
against one embedded `hapvr serve` with the shipped model and a 14-video library, client and
server on the same machine. Latencies are of answered (200) searches; `503` counts refusals,
`other` every other error. `code` is the revision served: `before` has no admission (every
search waits its turn), `after` answers 503 past HAPVR_SEARCH_QUEUE waiting searches.

| date | machine | code | clients | seconds | answered | answered/s | p50 ms | p95 ms | p99 ms | 503 | other | load |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""


@dataclass
class Run:
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, answered searches
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


class Connection:
    """A minimal keep-alive HTTP/1.1 client for one connection: a few microseconds of Python per
    request, where httpx spends about a millisecond, so a client on the same 2 cores does not
    take the server's CPU (with httpx, 200 clients cycling through 503s used half the machine)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, dict[str, str]]:
        """(status, headers) of GET `target`; the body is read and dropped. A connection the server
        closed while idle (its keep-alive timeout) is opened again once."""
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.close()
                if attempt == 2:
                    raise
                continue
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            await self.reader.readexactly(int(headers.get("content-length", "0")))
            if headers.get("connection", "").lower() == "close":
                await self.close()
            return int(lines[0].split()[1]), headers
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _client(host: str, port: int, ids: list[int], deadline: float, run: Run, rng: random.Random) -> None:
    connection = Connection(host, port)
    try:
        while (now := time.monotonic()) < deadline:
            try:
                status, headers = await connection.get(f"/search?video_id={rng.choice(ids)}")
            except (OSError, asyncio.IncompleteReadError) as error:
                run.errors[type(error).__name__] += 1
                await connection.close()
                continue
            if status == 200:
                run.latencies.append(time.monotonic() - now)
            elif status == 503:
                run.refused += 1
                wait = float(headers.get("retry-after", "1"))
                await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            else:
                run.errors[str(status)] += 1
    finally:
        await connection.close()


async def _load(host: str, port: int, ids: list[int], clients: int, seconds: float) -> Run:
    run = Run(clients)
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(_client(host, port, ids, deadline, run, random.Random(n)) for n in range(clients)))
    run.seconds = time.monotonic() - started  # includes the last answers after the deadline
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--code", type=Path, default=REPO, help="source tree to serve (default: this one)")
    parser.add_argument("--label", default="after", help="what `--code` is, for the results table")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="hapvr-load-") as tmp,
        running_service(Path(tmp) / "data", code=args.code.resolve()) as service,
    ):
        library = source_videos(fetch=False)
        states = wait_indexed(service, [upload(service, path) for path in library])
        ids = [video_id for video_id, state in states.items() if state == "ready"]
        host, port = service.client.base_url.host, int(service.client.base_url.port or 80)
        for search_id in ids[:3]:  # warm-up: thread pools, first reads of the store
            service.client.get("/search", params={"video_id": search_id})
        for clients in args.clients:
            run = asyncio.run(_load(host, port, ids, clients, args.seconds))
            runs.append(run)
            print(
                f"{args.label} {clients} clients: {len(run.latencies)} answered in {run.seconds:.1f} s "
                f"({len(run.latencies) / run.seconds:.1f}/s), p50 {run.percentile(50):.0f} ms, "
                f"p95 {run.percentile(95):.0f} ms, p99 {run.percentile(99):.0f} ms, "
                f"503 {run.refused}, other {dict(run.errors)}"
            )
    load = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    with RESULTS.open("a") as out:
        for run in runs:
            cells = (
                f"{datetime.now():%Y-%m-%d %H:%M}",
                f"{platform.machine()} x{os.cpu_count()}",
                args.label,
                str(run.clients),
                f"{run.seconds:.1f}",
                str(len(run.latencies)),
                f"{len(run.latencies) / run.seconds:.1f}",
                f"{run.percentile(50):.0f}",
                f"{run.percentile(95):.0f}",
                f"{run.percentile(99):.0f}",
                str(run.refused),
                str(sum(run.errors.values())),
                f"{load:.1f}",
            )
            out.write("| " + " | ".join(cells) + " |\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
