#!/usr/bin/env bash
# Train the service's default HAP-VR checkpoint from footage that registry packages ship
# (ARCHITECTURE.md section 9), and compare it on a held-out near-duplicate benchmark with the
# untrained network and the training-free path.
#
#   bench/train_default.sh [WORK_DIR]            # default WORK_DIR: runs/default
#
# Stages (each is skipped when its output exists, so an interrupted run can be started again):
#   1. data:  the training side of the footage split (bench/footage.py: training_videos(), linked
#      into WORK/train; the benchmark is built from the held-out side only), a PCA fitted on it
#      (bench.quality.training_pca_checkpoint, the PCA the benchmark's baselines use too), and a
#      validation set of edited copies of training-side segments (WORK/val.json) that picks the
#      best checkpoint without touching the held-out footage.
#   2. train: `hapvr train` in cached-feature mode (frozen EfficientNet-Lite0 + that PCA;
#      EfficientNet-Lite2 teacher), fixed seed. Running the script again resumes.
#   3. compare: `python -m bench.quality` on the held-out benchmark: the trained checkpoint, the
#      untrained network and the training-free path (mAP, µAP, R@1), into WORK/results.
#
# Settings (environment): STEPS (2000), BATCH (16 clips), CLIP_FRAMES (16), SEGMENT_SECONDS (16),
# VIEWS (16 cached views per clip), LR (1e-4), WARMUP (100), SEED (0), DEVICE (auto),
# NETWORK (model flags, default "--residual --symmetric": the comparator refines the Chamfer prior),
# THREADS (CPU threads, 0 = torch's default), EDITS (validation edit kinds), DATASET (full).
# Ship the result: cp WORK/run/best.safetensors model/checkpoints/default.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${1:-runs/default}
PYTHON=${PYTHON:-python}
export STEPS=${STEPS:-2000} BATCH=${BATCH:-16} CLIP_FRAMES=${CLIP_FRAMES:-16} SEGMENT_SECONDS=${SEGMENT_SECONDS:-16}
export NETWORK=${NETWORK:-"--residual --symmetric"}
export VIEWS=${VIEWS:-16} LR=${LR:-1e-4} WARMUP=${WARMUP:-100} SEED=${SEED:-0} DEVICE=${DEVICE:-auto} THREADS=${THREADS:-0}
export EDITS=${EDITS:-"crop hflip color blur overlay letterbox pip speed subclip reencode"} DATASET=${DATASET:-full}
mkdir -p "$WORK"

# 1. Data ------------------------------------------------------------------------------------
if [ ! -f "$WORK/val.json" ]; then
"$PYTHON" -m bench.footage --training-dir "$WORK/train"
"$PYTHON" - "$WORK" <<'PY'
import json, os, sys
from pathlib import Path

from bench.edits import NEEDS_OTHER, make_edit
from bench.footage import group_of, make_segments, training_videos
from bench.quality import training_pca_checkpoint

work = Path(sys.argv[1]).resolve()
(work / "init.txt").write_text(f"{training_pca_checkpoint()}\n")
# Validation: training-side segments (their footage is trained on, unlabeled) and edited copies.
segments = make_segments(training_videos(), 10.0, 6, short_side=360, out_dir=work / "val" / "segments")
videos, positives = {}, {}
for i, segment in enumerate(segments):
    videos[segment.stem] = str(segment)
    other = next(s for s in segments[i + 1:] + segments[:i] if group_of(s) != group_of(segment))
    copies = []
    for kind in os.environ["EDITS"].split():
        out = work / "val" / "copies" / f"{segment.stem}.{kind}.mp4"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            make_edit(kind, segment, out, other=other if kind in NEEDS_OTHER else None, seed=i)
        videos[out.stem] = str(out)
        copies.append(out.stem)
    positives[segment.stem] = copies
(work / "val.json").write_text(json.dumps({"videos": videos, "positives": positives}, indent=1))
print(f"validation: {len(segments)} sources, {len(videos)} videos")
PY
fi

# 2. Train -----------------------------------------------------------------------------------
RESUME=()
if [ -f "$WORK/run/train_state.pt" ]; then RESUME=(--resume "$WORK/run"); fi
# shellcheck disable=SC2086  # NETWORK is a list of flags
"$PYTHON" -m app.cli train "$WORK/train" --out "$WORK/run" --init "$(cat "$WORK/init.txt")" "${RESUME[@]}" \
    $NETWORK --cached-features --views-per-clip "$VIEWS" --teacher efficientnet_lite2 \
    --fps 1 --clip-frames "$CLIP_FRAMES" --segment-seconds "$SEGMENT_SECONDS" \
    --batch-size "$BATCH" --steps "$STEPS" --lr "$LR" --warmup-steps "$WARMUP" \
    --eval-manifest "$WORK/val.json" --eval-every 250 --save-every 250 --log-every 10 \
    --seed "$SEED" --device "$DEVICE" --threads "$THREADS" --max-minutes 0  # the full schedule, however long

# 3. Compare on the held-out benchmark -------------------------------------------------------
"$PYTHON" -m bench.quality --dataset "$DATASET" --checkpoint "$WORK/run/best.safetensors" \
    --methods training-free,untrained,best --results "$WORK/results"
