"""Memory of the service under long clips: peak RSS of a real `hapvr serve` (shipped model).

The case that once took the server to 19.4 GB and the OOM killer: a still picture looped for
7,000 s at 1 fps (a 0.5 MB H.264 file within every upload limit) sent twice at once to
`POST /search`, and once to `POST /videos` (0.9 -> 4.7 GB). Each phase below runs against one
fresh service; the peak is the kernel's high-water mark of the server process (VmHWM, reset
before each phase through /proc/PID/clear_refs), so no short spike between samples is missed.

    python -m bench.bench_memory [--seconds 7000] [--clip-seconds 600]

The library is the footage cache's source videos (14 files, 5.5 min), indexed first. Phases:
the 7,000 s still indexed; two 7,000 s clips searched at once; two clips at the clip budget
(HAPVR_MAX_CLIP_FRAMES, 600 frames) searched at once, the largest clip searches admitted,
re-ranked against the library and the 7,000 s video. Appends a row per phase to
bench/results/memory.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

from bench.api_method import running_service, upload, wait_indexed
from bench.footage import source_videos, still_video

RESULTS = Path(__file__).with_name("results") / "memory.md"
HEADER = """# Service memory under long clips

`python -m bench.bench_memory`: peak RSS (VmHWM) of one `hapvr serve` process with the shipped
model, at its default settings, per phase. `base` is the RSS when ready, before the phase.
Before streaming and the clip budget, the same machine measured two parallel 7,000 s still
searches at 19.4 GB (OOM-killed) and the 7,000 s ingest at 0.9 -> 4.7 GB.

| date | machine | phase | answers | seconds | base MB | peak MB | load |
|---|---|---|---|---|---|---|---|
"""


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS


def _search_clips(url: str, clip: Path, copies: int) -> list[str]:
    """POST /search with `copies` uploads of `clip` at once; each answer as "status: detail"."""
    data = clip.read_bytes()

    def one(_: int) -> str:
        answer = httpx.post(f"{url}/search", files={"file": (clip.name, data, "video/mp4")}, timeout=1800)
        body = answer.json()
        return f"{answer.status_code}: {body['detail'] if 'detail' in body else str(body['count']) + ' hits'}"

    with ThreadPoolExecutor(copies) as pool:
        return list(pool.map(one, range(copies)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=7000, help="length of the long still clip")
    parser.add_argument("--clip-seconds", type=int, default=600, help="a clip at the clip-search frame budget")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hapvr-memory-") as tmp:
        root = Path(tmp)
        long_clip = still_video(root / "still-long.mp4", args.seconds)
        budget_clip = still_video(root / "still-budget.mp4", args.clip_seconds, width=480, height=270)
        print(f"clips: {long_clip.stat().st_size / 1e3:.0f} KB, {budget_clip.stat().st_size / 1e3:.0f} KB")
        with running_service(root / "data") as service:
            url = str(service.client.base_url).rstrip("/")
            pid = service.process.pid
            library = source_videos(fetch=False)
            states = wait_indexed(service, [upload(service, path) for path in library])
            print(f"library: {list(states.values()).count('ready')} of {len(library)} videos ready")
            phases = [
                (f"index {args.seconds} s video", lambda: _index(service, long_clip)),
                (f"2 x {args.seconds} s clip search", lambda: _search_clips(url, long_clip, 2)),
                (f"2 x {args.clip_seconds} s clip search", lambda: _search_clips(url, budget_clip, 2)),
            ]
            for name, run in phases:
                base = _status_kb(pid, "VmRSS")
                _reset_peak(pid)
                started = time.perf_counter()
                answers = run()
                took = time.perf_counter() - started
                peak = _status_kb(pid, "VmHWM")
                counted = Counter(answers)  # two identical answers are written once, counted
                summary = "; ".join(f"{count} x {answer}" if count > 1 else answer for answer, count in counted.items())
                rows.append((name, summary, took, base / 1024, peak / 1024))
                print(f"{name}: {answers} in {took:.1f} s, RSS {base / 1024:.0f} MB -> peak {peak / 1024:.0f} MB")
    load = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    with RESULTS.open("a") as out:
        for name, answers, took, base, peak in rows:
            cells = (
                f"{datetime.now():%Y-%m-%d %H:%M}",
                f"{platform.machine()} x{os.cpu_count()}",
                name,
                answers.replace("|", "/"),
                f"{took:.1f}",
                f"{base:.0f}",
                f"{peak:.0f}",
                f"{load:.1f}",
            )
            out.write("| " + " | ".join(cells) + " |\n")
    print(f"wrote {RESULTS}")
    return 0


def _index(service, clip: Path) -> list[str]:  # type: ignore[no-untyped-def]
    with open(clip, "rb") as handle:
        answer = service.client.post("/videos", files={"file": (clip.name, handle, "video/mp4")})
    video_id = int(answer.json()["id"])
    wait_indexed(service, [video_id], timeout=1800)
    state = service.client.get(f"/videos/{video_id}").json()
    warnings = "; ".join(state["warnings"]) or "no warnings"
    return [f"{answer.status_code} then {state['status']}: {state['frames_indexed']} frames, {warnings}"]


if __name__ == "__main__":
    raise SystemExit(main())
