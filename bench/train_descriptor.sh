#!/usr/bin/env bash
# Train the frame descriptor for copy detection on the training side of the footage split and
# compare it on the held-out near-duplicate benchmark with the shipped checkpoint.
#
#   bench/train_descriptor.sh [WORK_DIR]            # default WORK_DIR: runs/descriptor
#
# Stages:
#   1. data:  the training side of the footage split (bench/footage.py), linked into WORK/train;
#      no recording of the benchmark is on that side.
#   2. train: `hapvr train-descriptor` from the shipped checkpoint (frozen backbone; the
#      projection starts as its PCA), into WORK/run. A rerun reuses the encoded views.
#   3. compare: `python -m bench.quality` on the held-out benchmark, every method in one run:
#      the training-free path and the untrained network on the shipped PCA, the shipped
#      checkpoint, the shipped network over the new descriptor ("descriptor"), and the
#      training-free path over it ("descriptor-training-free"), into WORK/results.
#
# Settings (environment): FLAGS (extra train-descriptor flags, default none: its defaults),
# THREADS (CPU threads, default 2), DATASET (full).
# Ship the result: cp WORK/run/descriptor.safetensors model/checkpoints/default.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${1:-runs/descriptor}
PYTHON=${PYTHON:-python}
FLAGS=${FLAGS:-} THREADS=${THREADS:-2} DATASET=${DATASET:-full}
mkdir -p "$WORK"

# 1. Data
"$PYTHON" -m bench.footage --training-dir "$WORK/train"

# 2. Train
# shellcheck disable=SC2086
"$PYTHON" -m app.cli train-descriptor "$WORK/train" --out "$WORK/run" --threads "$THREADS" $FLAGS

# 3. Compare
"$PYTHON" - "$WORK" <<'PY'
import sys
from pathlib import Path

from model.checkpoint import ModelBundle, load_checkpoint, save_checkpoint

work = Path(sys.argv[1])
trained = load_checkpoint(work / "run" / "descriptor.safetensors")
provenance = {"descriptor": trained.provenance["descriptor"]}
bundle = ModelBundle.training_free(trained.pca, backbone=trained.backbone, provenance=provenance)
save_checkpoint(work / "descriptor-training-free.safetensors", bundle)
PY
"$PYTHON" -m bench.quality --dataset "$DATASET" --results "$WORK/results" \
    --checkpoint "$WORK/run/descriptor.safetensors" --checkpoint "$WORK/descriptor-training-free.safetensors" \
    --methods training-free,untrained,default,descriptor,descriptor-training-free
