"""Loopback load: many clients searching one embedded service at once (shipped model, real library).

A fresh `hapvr serve` indexes the footage cache's source videos (14 files, 5.5 min), then for each
client count C, C asyncio clients (one keep-alive connection each) send `GET /search?video_id=ID`
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

import httpx
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


async def _client(client: httpx.AsyncClient, ids: list[int], deadline: float, run: Run, rng: random.Random) -> None:
    while (now := time.monotonic()) < deadline:
        try:
            answer = await client.get("/search", params={"video_id": rng.choice(ids)})
        except httpx.HTTPError as error:
            run.errors[type(error).__name__] += 1
            continue
        if answer.status_code == 200:
            run.latencies.append(time.monotonic() - now)
        elif answer.status_code == 503:
            run.refused += 1
            wait = float(answer.headers.get("retry-after", "1"))
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        else:
            run.errors[str(answer.status_code)] += 1


async def _load(url: str, ids: list[int], clients: int, seconds: float) -> Run:
    run = Run(clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(*(_client(client, ids, deadline, run, random.Random(n)) for n in range(clients)))
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
        url = str(service.client.base_url).rstrip("/")
        for search_id in ids[:3]:  # warm-up: thread pools, first reads of the store
            service.client.get("/search", params={"video_id": search_id})
        for clients in args.clients:
            run = asyncio.run(_load(url, ids, clients, args.seconds))
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
