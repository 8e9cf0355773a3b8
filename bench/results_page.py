"""bench/RESULTS.md: every benchmark's headline numbers on one page, and the project's targets, met or not.

Built only from what the benchmarks wrote under bench/results (quality.json and its plot,
scores.json, quality_scale.json, encoder.md, similarity.md, ingest.md, search.json and its plot, memory.md, load.md). Each benchmark command that
writes results calls `refresh` when done, so the page always follows the latest run;
`python -m bench.results_page` rebuilds it by hand. A benchmark with no results is shown as
"not run", and so is every target that depends on it.

    python -m bench.results_page [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).with_name("results")
PAGE = Path(__file__).with_name("RESULTS.md")

QUALITY_MAP_TARGET = 0.95
QUALITY_UAP_TARGET = 0.90
PEER = "vpdq"
# The score the service publishes (bench/results/scores.json) and its targets on held-out footage.
PUBLISHED = "aligned-window"
PUBLISHED_MAP_TARGET = 0.90
PUBLISHED_UAP_TARGET = 0.85
# The benchmark inside distractor videos (bench/results/quality_scale.json).
SCALE_DISTRACTORS = 100_000
SCALE_MAP_DROP = 0.02
SEARCH_TARGET_MS = 150
SEARCH_TARGET_VIDEOS = 100_000

MET, NOT_MET, NOT_RUN = "met", "not met", "not run"


@dataclass(frozen=True)
class Target:
    goal: str
    measured: str
    status: str


@dataclass
class Section:
    """One benchmark's part of the page: its lines and the targets it decides."""

    lines: list[str]
    targets: list[Target]


def page_for(results: Path) -> Path:
    """bench/RESULTS.md for the project's results folder; RESULTS.md inside any other one (a test's)."""
    return PAGE if results.resolve() == RESULTS_DIR.resolve() else results / "RESULTS.md"


def status(passed: bool) -> str:
    return MET if passed else NOT_MET


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def last_table(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the last markdown table in `text`; ValueError when there is none."""
    tables: list[list[list[str]]] = []
    previous_was_row = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not previous_was_row:
                tables.append([])
            if not all(set(cell) <= set("-: ") for cell in cells):  # skip the |---| separator
                tables[-1].append(cells)
        previous_was_row = is_row
    if not tables or not tables[-1]:
        raise ValueError("no table")
    header, *rows = tables[-1]
    return header, rows


def latest_row(path: Path) -> tuple[dict[str, str], int]:
    """The last row of the last table in a results file, by column name, and how many rows it has."""
    header, rows = last_table(path.read_text())
    if not rows:
        raise ValueError("an empty table")
    return dict(zip(header, rows[-1])), len(rows)


def _not_run(title: str, file: str, command: str) -> list[str]:
    return [f"## {title}", "", f"Not run: no `{file}` yet. Run `{command}`.", ""]


def _unreadable(title: str, file: str, error: Exception) -> list[str]:
    return [f"## {title}", "", f"Unreadable: `{file}` ({error}).", ""]


# -- quality -----------------------------------------------------------------------------------


def shipped_method() -> str:
    """The quality row of the model the service ships: `training-free` while the default checkpoint
    holds no trained network, else the row of that checkpoint (`--checkpoint .../default.safetensors`)."""
    from safetensors import safe_open

    from model.checkpoint import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        return "training-free"
    with safe_open(str(DEFAULT_CHECKPOINT), framework="numpy") as handle:
        mode = (handle.metadata() or {}).get("mode", "training-free")
    return "training-free" if mode == "training-free" else DEFAULT_CHECKPOINT.stem


def quality_targets(overall: dict[str, dict], ours: str) -> list[Target]:
    goals = (
        f"mAP >= {QUALITY_MAP_TARGET:.2f} on the benchmark",
        f"µAP >= {QUALITY_UAP_TARGET:.2f} on the benchmark",
        "ahead of vPDQ on mAP and µAP",
    )
    mine, peer = overall.get(ours), overall.get(PEER)
    if mine is None:
        return [
            Target(f"{goal} (shipped model: `{ours}`)", f"no `{ours}` row in quality.json", NOT_RUN) for goal in goals
        ]
    targets = [
        Target(
            f"{goals[0]} (shipped model: `{ours}`)",
            f"mAP {_fmt(mine['mAP'])}",
            status(mine["mAP"] >= QUALITY_MAP_TARGET),
        ),
        Target(
            f"{goals[1]} (shipped model: `{ours}`)",
            f"µAP {_fmt(mine['uAP'])}",
            status(mine["uAP"] >= QUALITY_UAP_TARGET),
        ),
    ]
    if peer is None:
        targets.append(Target(goals[2], "vPDQ was not scored (skipped or missing)", NOT_RUN))
    else:
        measured = f"mAP {_fmt(mine['mAP'])} vs {_fmt(peer['mAP'])}, µAP {_fmt(mine['uAP'])} vs {_fmt(peer['uAP'])}"
        targets.append(Target(goals[2], measured, status(mine["mAP"] > peer["mAP"] and mine["uAP"] > peer["uAP"])))
    return targets


def quality_row(name: str, method: dict, metrics: dict | None) -> list[str]:
    if metrics is None:
        return [name, "-", "-", "-", f"skipped: {method.get('skipped')}"]
    return [name, _fmt(metrics["mAP"]), _fmt(metrics["uAP"]), _fmt(metrics["R@1"]), f"{metrics['queries']:.0f}"]


def quality_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Retrieval quality", "quality.json"
    ours = shipped_method()
    path = results / file
    if not path.exists():
        lines = _not_run(title, file, "python -m bench.quality --dataset full")
        return Section(lines, quality_targets({}, ours))
    try:
        numbers = json.loads(path.read_text())
        overall = numbers["overall"]
        rows = [quality_row(name, method, overall.get(name)) for name, method in numbers["methods"].items()]
    except (ValueError, KeyError, TypeError) as error:
        return Section(_unreadable(title, file, error), quality_targets({}, ours))
    lines = [
        f"## {title}",
        "",
        f"`{numbers['command']}`: dataset `{numbers['dataset']}`, every query ranked against the whole "
        f"database. Per edit kind and method details: [quality.md]({link('quality.md')}). "
        f"The shipped model is `{ours}`.",
        "",
        *_table(["method", "mAP", "µAP", "R@1", "queries"], rows),
        "",
    ]
    if (results / "quality_per_kind.png").exists():
        lines += [f"![mAP and µAP per edit kind, copy as query]({link('quality_per_kind.png')})", ""]
    return Section(lines, quality_targets(overall, ours))


def published_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Published score", "scores.json"
    goals = (
        f"mAP >= {PUBLISHED_MAP_TARGET:.2f} with the published score (`{PUBLISHED}`)",
        f"µAP >= {PUBLISHED_UAP_TARGET:.2f} with the published score (`{PUBLISHED}`)",
    )
    missing = [Target(goal, f"no `{PUBLISHED}` row in {file}", NOT_RUN) for goal in goals]
    path = results / file
    if not path.exists():
        command = f"python -m bench.quality --dataset full --methods default,aligned,{PUBLISHED}"
        return Section(_not_run(title, file, command), missing)
    try:
        numbers = json.loads(path.read_text())
        overall = numbers["overall"]
        rows = [quality_row(name, method, overall.get(name)) for name, method in numbers["methods"].items()]
    except (ValueError, KeyError, TypeError) as error:
        return Section(_unreadable(title, file, error), missing)
    lines = [
        f"## {title}",
        "",
        f"`{numbers['command']}`: the calibrated 0-1 score the service publishes (`{PUBLISHED}`) beside "
        f"what it builds on; tiers, localisation and per-kind tables in [scores.md]({link('scores.md')}).",
        "",
        *_table(["method", "mAP", "µAP", "R@1", "queries"], rows),
        "",
    ]
    ours = overall.get(PUBLISHED)
    if ours is None:
        return Section(lines, missing)
    targets = [
        Target(goals[0], f"mAP {_fmt(ours['mAP'])}", status(ours["mAP"] >= PUBLISHED_MAP_TARGET)),
        Target(goals[1], f"µAP {_fmt(ours['uAP'])}", status(ours["uAP"] >= PUBLISHED_UAP_TARGET)),
    ]
    return Section(lines, targets)


def scale_quality_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Quality among distractors", "quality_scale.json"
    goal = f"mAP drops at most {SCALE_MAP_DROP} among {SCALE_DISTRACTORS:,} distractor videos"
    path = results / file
    if not path.exists():
        command = f"python -m bench.quality_at_scale --distractors {SCALE_DISTRACTORS}"
        return Section(_not_run(title, file, command), [Target(goal, f"no {file}", NOT_RUN)])
    try:
        numbers = json.loads(path.read_text())
        distractors = int(numbers["distractors"])
        without, with_ = numbers["metrics"]["without"], numbers["metrics"]["with"]
        rows = [
            [label, _fmt(m["mAP"]), _fmt(m["uAP"]), _fmt(m["R@1"]), f"{m['queries']:.0f}"]
            for label, m in (("benchmark alone", without), (f"among {distractors:,} distractors", with_))
        ]
    except (ValueError, KeyError, TypeError) as error:
        return Section(_unreadable(title, file, error), [Target(goal, f"unreadable {file}", NOT_RUN)])
    drop = without["mAP"] - with_["mAP"]
    lines = [
        f"## {title}",
        "",
        f"The held-out benchmark searched by the service's own search inside {distractors:,} distractor videos "
        f"cut from edited training-side footage; how they are made in [quality_scale.md]({link('quality_scale.md')}).",
        "",
        *_table(["library", "mAP", "µAP", "R@1", "queries"], rows),
        "",
    ]
    if distractors < SCALE_DISTRACTORS:
        return Section(lines, [Target(goal, f"only {distractors:,} distractors measured", NOT_RUN)])
    return Section(lines, [Target(goal, f"mAP drop {_fmt(drop)}", status(drop <= SCALE_MAP_DROP))])


# -- encoder, similarity, ingest (markdown tables) --------------------------------------------


def pick(row: dict[str, str], columns: list[str]) -> list[str]:
    return [row.get(column, "-") for column in columns]


def encoder_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Frame encoder throughput", "encoder.md"
    if not (results / file).exists():
        return Section(_not_run(title, file, "python bench/bench_encoder.py"), [])
    try:
        row, count = latest_row(results / file)
    except ValueError as error:
        return Section(_unreadable(title, file, error), [])
    columns = [
        "date",
        "machine",
        "threads",
        "backbone",
        "GFLOP/frame",
        "matmul GFLOP/s",
        "bound frames/s",
        "onnxruntime best / median",
        "onnxruntime best, % of bound",
        "load",
        "note",
    ]
    lines = [
        f"## {title}",
        "",
        f"Frames/s, latest of {count} runs in [encoder.md]({link(file)}).",
        "",
        *_table(columns, [pick(row, columns)]),
        "",
    ]
    return Section(lines, [])


def similarity_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Exact similarity throughput", "similarity.md"
    if not (results / file).exists():
        return Section(_not_run(title, file, "python -m bench.bench_similarity"), [])
    try:
        header, rows = last_table((results / file).read_text())
    except ValueError as error:
        return Section(_unreadable(title, file, error), [])
    lines = [
        f"## {title}",
        "",
        f"One query against a batch of targets; details in [similarity.md]({link(file)}).",
        "",
        *_table(header, rows),
        "",
    ]
    return Section(lines, [])


def ingest_target(row: dict[str, str] | None) -> Target:
    goal = "ingest at least as fast as vPDQ's hashing of the same files"
    if row is None:
        return Target(goal, "no ingest run", NOT_RUN)
    try:
        ours, peer = float(row["ours s"]), float(row["vPDQ s"])
    except (KeyError, ValueError):
        return Target(goal, "vPDQ not measured in the latest run", NOT_RUN)
    measured = f"ours {ours:g} s, vPDQ {peer:g} s for {row.get('video s', '?')} s of video ({row.get('date', '?')})"
    return Target(goal, measured, status(ours <= peer))


def ingest_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Ingest throughput", "ingest.md"
    if not (results / file).exists():
        return Section(_not_run(title, file, "python -m bench.bench_ingest"), [ingest_target(None)])
    try:
        row, count = latest_row(results / file)
    except ValueError as error:
        return Section(_unreadable(title, file, error), [ingest_target(None)])
    columns = [
        "date",
        "machine",
        "files",
        "video s",
        "ours s",
        "ours x real time",
        "vPDQ s",
        "vPDQ x real time",
        "ours / vPDQ",
        "load",
        "note",
    ]
    lines = [
        f"## {title}",
        "",
        f'Latest of {count} runs in [ingest.md]({link(file)}); "ours / vPDQ" above 1 means ours is faster.',
        "",
        *_table(columns, [pick(row, columns)]),
        "",
    ]
    return Section(lines, [ingest_target(row)])


# -- search ------------------------------------------------------------------------------------


def search_target(sizes: dict[str, dict]) -> Target:
    goal = f"search p95 under {SEARCH_TARGET_MS} ms at {SEARCH_TARGET_VIDEOS:,} videos"
    run = sizes.get(str(SEARCH_TARGET_VIDEOS))
    if run is None:
        largest = max(sizes.values(), key=lambda s: s["videos"], default=None)
        measured = "no run at that size" + (
            "" if largest is None else f" (largest: {largest['videos']:,} videos, p95 {largest['p95_ms']:.0f} ms)"
        )
        return Target(goal, measured, NOT_RUN)
    measured = f"p95 {run['p95_ms']:.0f} ms ({run['machine']}, {run['date']})"
    return Target(goal, measured, status(run["p95_ms"] < SEARCH_TARGET_MS))


def _kb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}"


def search_row(run: dict) -> list[str]:
    per_minute = run["bytes_per_video_minute"]
    recall = run["candidate_recall"]
    return [
        f"{run['videos']:,}",
        f"{run['video_minutes']:,.0f}",
        run["index"],
        f"{run['p50_ms']:.0f}",
        f"{run['p95_ms']:.0f}",
        f"{run['p99_ms']:.0f}",
        _fmt(recall),
        _fmt(run["best_candidate_recall"]),
        _kb(per_minute["index_file"]),
        _kb(per_minute["index_resident"]),
        _kb(per_minute["store_disk"]),
        f"{run['load_avg']:.1f}",
        run["date"],
    ]


def search_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Search at scale", "search.json"
    if not (results / file).exists():
        lines = _not_run(title, file, "python bench/bench_search.py --sizes 1000,10000,100000 --data-dir DIR")
        return Section(lines, [search_target({})])
    try:
        data = json.loads((results / file).read_text())
        library, sizes = data["library"], data["sizes"]
        runs = sorted(sizes.values(), key=lambda run: run["videos"])
        table = [search_row(run) for run in runs]
    except (ValueError, KeyError, TypeError) as error:
        return Section(_unreadable(title, file, error), [search_target({})])
    machines = sorted({run["machine"] for run in runs})
    candidates = sorted({run["candidates"] for run in runs})
    lines = [
        f"## {title}",
        "",
        f"Synthetic library, lengths log-uniform {library['min_seconds']:g} to {library['max_seconds']:g} s at "
        f"1 fps at every size; the real query path (C = {', '.join(map(str, candidates))}) on "
        f"{'; '.join(machines)}. Latency in ms. recall@C: share of the exhaustive search's top-C candidate "
        "videos in the index's top C; 1-R@C: share of queries whose exhaustive best candidate is among them. "
        f"Memory in KB per indexed video minute. Every run and stage: [search.md]({link('search.md')}).",
        "",
        *_table(
            [
                "videos",
                "video min",
                "index",
                "p50",
                "p95",
                "p99",
                "recall@C",
                "1-R@C",
                "index file KB/min",
                "index RSS KB/min",
                "store KB/min",
                "load",
                "date",
            ],
            table,
        ),
        "",
    ]
    if (results / "search_latency.png").exists():
        lines += [f"![search latency against index size]({link('search_latency.png')})", ""]
    return Section(lines + index_scale_lines(results, link), [search_target(sizes)])


def index_scale_lines(results: Path, link: Callable[[str], str]) -> list[str]:
    """The latest run of bench/index_scale.py at each size (the frame index alone), if any."""
    try:
        runs = [json.loads(line) for line in (results / "index_scale.jsonl").read_text().splitlines() if line.strip()]
        latest = {run["videos"]: run for run in runs}
        table = [
            [
                f"{run['videos']:,}",
                f"{run['video_minutes']:,.0f}",
                f"{run['index']} ({run['ivf_cells']} cells, nprobe {run['nprobe']})",
                f"{run['build']['build_s']:.0f}",
                f"{run['candidates_p50_ms']:.0f}",
                f"{run['candidates_p95_ms']:.0f}",
                _fmt(run["candidate_recall"]),
                _fmt(run["best_candidate_recall"]),
                _kb(run["bytes_per_video_minute"]["index_file"]),
                _kb(run["bytes_per_video_minute"]["index_resident"]),
                f"{run['load_avg']:.1f}",
                run["date"],
            ]
            for _, run in sorted(latest.items())
        ]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as error:
        return _unreadable("The frame index alone", "index_scale.jsonl", error)[2:]
    header = ["videos", "video min", "index", "build s", "candidates p50", "p95", "recall@C", "1-R@C"]
    return [
        "The frame index alone, past the sizes whose feature store this box can build (bench/index_scale.py: "
        "the candidate stage's latency in ms, build time, memory in KB per video-minute, candidate recall; "
        f"[index_scale.md]({link('index_scale.md')})):",
        "",
        *_table([*header, "index file KB/min", "index RSS KB/min", "load", "date"], table),
        "",
    ]


# -- memory and load (markdown tables) ---------------------------------------------------------

MEMORY_TARGET_MB = 2048


def latest_rows(path: Path, key: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows): of the last table in a results file, the latest row for each value of column `key`."""
    header, rows = last_table(path.read_text())
    if not rows:
        raise ValueError("an empty table")
    column = header.index(key)
    latest = {row[column]: row for row in rows}
    return header, list(latest.values())


def memory_target(header: list[str], rows: list[list[str]]) -> Target:
    goal = f"two 7,000 s still clips searched at once keep the service under {MEMORY_TARGET_MB} MB RSS"
    for row in rows:
        cells = dict(zip(header, row))
        if cells.get("phase", "").startswith("2 x 7000 s clip search"):
            peak = float(cells["peak MB"])
            return Target(goal, f"peak {peak:.0f} MB ({cells.get('date', '?')})", status(peak < MEMORY_TARGET_MB))
    return Target(goal, "no memory run", NOT_RUN)


def memory_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Service memory under long clips", "memory.md"
    if not (results / file).exists():
        return Section(_not_run(title, file, "python -m bench.bench_memory"), [memory_target([], [])])
    try:
        header, rows = latest_rows(results / file, "phase")
    except ValueError as error:
        return Section(_unreadable(title, file, error), [memory_target([], [])])
    lines = [f"## {title}", "", f"Latest run of each phase in [{file}]({link(file)}).", "", *_table(header, rows), ""]
    return Section(lines, [memory_target(header, rows)])


def load_section(results: Path, link: Callable[[str], str]) -> Section:
    title, file = "Loopback load", "load.md"
    if not (results / file).exists():
        return Section(_not_run(title, file, "python -m bench.bench_load"), [])
    try:
        header, rows = last_table((results / file).read_text())
        code, clients = header.index("code"), header.index("clients")
        latest = list({(row[code], row[clients]): row for row in rows}.values())
    except ValueError as error:
        return Section(_unreadable(title, file, error), [])
    lines = [
        f"## {title}",
        "",
        f"Latest run of each revision and client count in [{file}]({link(file)}).",
        "",
        *_table(header, latest),
        "",
    ]
    return Section(lines, [])


# -- the page ----------------------------------------------------------------------------------

SECTIONS = (
    quality_section,
    published_section,
    scale_quality_section,
    encoder_section,
    similarity_section,
    ingest_section,
    search_section,
    memory_section,
    load_section,
)


def build_page(results: Path, page: Path) -> str:
    """The page's markdown for the results in `results`, with links relative to `page`."""

    def link(name: str) -> str:
        return Path(os.path.relpath(results / name, page.parent)).as_posix()

    sections = [section(results, link) for section in SECTIONS]
    targets = [target for section in sections for target in section.targets]
    lines = [
        "# Benchmark results",
        "",
        "Generated from `bench/results/` by every benchmark command that writes results (and by "
        "`python -m bench.results_page`); do not edit by hand.",
        "",
        "## Targets",
        "",
        *_table(["target", "measured", "status"], [[t.goal, t.measured, f"**{t.status}**"] for t in targets]),
        "",
    ]
    for section in sections:
        lines += section.lines
    return "\n".join(lines)


def refresh(results: Path = RESULTS_DIR) -> Path:
    """Rewrite the page for `results` (see page_for); returns its path."""
    page = page_for(results)
    page.write_text(build_page(results, page))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="the benchmarks' results folder")
    args = parser.parse_args(argv)
    print(f"wrote {refresh(args.results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
