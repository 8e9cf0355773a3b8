"""The training loop: optimiser, schedule, accumulation, mixed precision, DDP, logging, eval, checkpoints.

Output folder (`run.out`):
    last.safetensors   the latest model, a regular checkpoint (`hapvr compare --checkpoint`)
    best.safetensors   the best by evaluation mAP (only with an evaluation manifest)
    train_state.pt     optimiser, step and best metric, for --resume
    config.json        the resolved config
    metrics.csv        one row per logged step and per evaluation
    tensorboard/       the same scalars for TensorBoard (when the tensorboard package is installed)
    cache/             decoded frames (unless data.cache_dir says elsewhere)

The batch of step k on rank r is drawn from a generator seeded with (seed, k, r, micro-step),
and the learning rate is a function of k alone, so a resumed run sees the same batches and the
same schedule as one that never stopped.
"""

from __future__ import annotations

import csv
import logging
import math
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from model.checkpoint import ModelBundle, load_checkpoint, save_checkpoint
from model.fileio import atomic_path
from model.losses.total import HapVRLoss, unit_similarity
from model.metrics import RetrievalMetrics, retrieval_metrics
from model.provenance import portable_path, portable_words
from model.similarity.config import SimilarityConfig
from model.similarity.network import HapVRSimilarity
from model.train.budget import CALIBRATION_STEPS, TimeBudget, budget_minutes, fitted_warmup
from model.train.config import ConfigError, TrainConfig, write_config
from model.train.data import (
    DataError,
    FrameCache,
    build_clips,
    data_fingerprint,
    list_videos,
    read_eval_manifest,
)
from model.train.distributed import DistributedEnv

if TYPE_CHECKING:
    from model.train.batch import OnlineBatcher
    from model.train.feature_cache import CachedBatcher

logger = logging.getLogger("hapvr.train")

LOSS_TERMS = ("total", "infonce", "inner", "ap", "sshn", "hard_negative", "self", "reg")
CSV_COLUMNS = ("step", "phase", "lr", *LOSS_TERMS, "mAP", "uAP", "R@1", "seconds")
STATE_FILE = "train_state.pt"


@dataclass
class TrainResult:
    step: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    losses: list[dict[str, float]] = field(default_factory=list)  # logged training rows
    evaluations: list[dict[str, float]] = field(default_factory=list)
    schedule_steps: int = 0  # the schedule's length: optim.steps, or shorter to fit a time budget
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM (a checkpoint was saved first)


# ----------------------------------------------------------------------------------------------
# Schedule


def learning_rate(step: int, base: float, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps, then cosine from `base` down to base * min_ratio at `total`."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ----------------------------------------------------------------------------------------------
# Distributed set-up


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    distributed: bool = False  # under torchrun (even with one process): a process group and DDP

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup_runtime(device: str, env: DistributedEnv | None = None) -> Runtime:
    """One process per GPU under torchrun (which sets RANK and WORLD_SIZE), else a single process."""
    env = env if env is not None else DistributedEnv()
    distributed = env.distributed
    world = env.world_size or 1
    rank = env.rank or 0
    local_rank = env.local_rank or 0
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device is cuda but no CUDA device is available")
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        target = torch.device("cpu")
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Runtime(target, rank, world, local_rank, distributed)


class PairwiseScorer(nn.Module):
    """The network's training forward (index, then every pair of the batch) as one `forward`,
    so DistributedDataParallel sees and synchronises it."""

    def __init__(self, network: HapVRSimilarity) -> None:
        super().__init__()
        self.network = network

    def forward(self, regions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        indexed = self.network.index(regions)
        out = self.network.all_pairs(indexed, mask)
        return out.score, out.frame_sim, out.video_sim_raw, out.video_mask


# ----------------------------------------------------------------------------------------------
# The loss of one batch


def batch_losses(scorer: nn.Module, criterion: HapVRLoss, batch, amp_dtype: torch.dtype | None) -> dict[str, Tensor]:
    """Forward every pair of the batch and all loss terms (computed in float32)."""
    autocast = (
        torch.autocast(device_type=batch.regions.device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else nullcontext()
    )
    with autocast:
        score, frame_sim, raw, raw_mask = scorer(batch.regions, batch.mask)
    score, frame_sim = score.float(), frame_sim.float()
    sims = unit_similarity(score)
    count = sims.shape[0]
    off_diagonal = ~torch.eye(count, dtype=torch.bool, device=sims.device)
    positive_pairs = (batch.labels & off_diagonal).nonzero(as_tuple=False)
    frame_inputs: dict[str, Any] = {}
    if batch.teacher is not None and len(positive_pairs):
        a, b = positive_pairs[:, 0], positive_pairs[:, 1]
        teacher_sims = torch.bmm(batch.teacher[a], batch.teacher[b].transpose(1, 2))
        frame_inputs = dict(
            frame_sims=frame_sim[a, b],
            teacher_sims=teacher_sims,
            q_mask=batch.mask[a],
            t_mask=batch.mask[b],
        )
    return criterion(
        sims,
        batch.labels,
        sims.diagonal(),
        raw=None if raw is None else raw.float(),
        raw_mask=raw_mask,
        **frame_inputs,
    )


# ----------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    network: HapVRSimilarity, features: list[Tensor], eval_set, device: torch.device, chunk: int = 16
) -> RetrievalMetrics:
    """Rank the whole evaluation database for every query (query excluded): mAP, µAP, R@1."""
    was_training = network.training
    network.eval()
    indexed = [network.index(x.to(device)) for x in features]
    scores = np.zeros((len(eval_set.queries), len(features)), dtype=np.float64)
    for row, query in enumerate(eval_set.queries):
        for start in range(0, len(indexed), chunk):
            output = network.one_to_many(indexed[query], indexed[start : start + chunk])
            scores[row, start : start + chunk] = output.score.float().cpu().numpy()
    network.train(was_training)
    return retrieval_metrics(scores, eval_set.positives, eval_set.exclude())


def encode_eval_set(eval_set, bundle: ModelBundle, fps: float, cache_dir: str | Path | None) -> list[Tensor]:
    """Encoder features of every evaluation video, once per run, through the service's own
    file-to-features path (model.embedding), so evaluation sees videos as the search does."""
    from model.embedding import VideoEmbedder
    from model.video import VideoDecodeError

    embedder = VideoEmbedder(bundle, fps=fps, cache_dir=None if cache_dir is None else Path(cache_dir))
    features = []
    for path in eval_set.paths:
        try:
            encoded = embedder.encode_file(path)
        except (VideoDecodeError, OSError) as error:
            raise DataError(f"evaluation video {path} does not decode: {error}") from None
        features.append(torch.from_numpy(encoded.astype(np.float32)))
    return features


# ----------------------------------------------------------------------------------------------
# Metrics output


class MetricsLog:
    """metrics.csv (always) and TensorBoard (when installed); rank 0 only."""

    def __init__(self, out: Path, resume_step: int | None) -> None:
        self.path = out / "metrics.csv"
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            # Drop rows from after the state we resume from: they will be written again.
            with self.path.open(newline="") as file:
                rows = [row for row in csv.DictReader(file) if int(row["step"]) <= resume_step]
        with self.path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in CSV_COLUMNS} for row in rows)
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed: metrics go to %s only", self.path)
        else:
            self.writer = SummaryWriter(
                log_dir=str(out / "tensorboard"), purge_step=resume_step + 1 if resume_step is not None else None
            )

    def write(self, step: int, phase: str, values: dict[str, float]) -> None:
        row = {"step": step, "phase": phase, **{k: f"{v:.6g}" for k, v in values.items() if k in CSV_COLUMNS}}
        with self.path.open("a", newline="") as file:
            csv.DictWriter(file, fieldnames=CSV_COLUMNS).writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{phase}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------------------------------
# The run


def train(
    config: TrainConfig,
    command: list[str] | None = None,
    *,
    cache_dir: str | Path | None = None,
    env: DistributedEnv | None = None,
) -> TrainResult:
    """Run (or resume) training as `config` says; returns where the checkpoints went.

    `cache_dir`: where the encoder's and the teacher's ONNX exports are cached (None: the
    default of model.encoders.onnx_runtime). `env`: torchrun's variables (default: read now).
    """
    config.check_ready()
    runtime = setup_runtime(config.run.device, env)
    try:
        return _train(config, runtime, command or sys.argv, cache_dir)
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train(config: TrainConfig, runtime: Runtime, command: list[str], cache_dir: str | Path | None) -> TrainResult:
    from model.train.batch import OnlineBatcher, ViewEncoder
    from model.train.teacher import create_teacher

    started = time.monotonic()  # the time budget covers the whole run, data preparation included
    out = Path(config.run.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if config.run.threads > 0 and runtime.device.type == "cpu":
        torch.set_num_threads(config.run.threads)
    _seed_everything(config.run.seed + runtime.rank)

    per_rank = config.optim.batch_size // (runtime.world * config.optim.accum_steps)
    if per_rank * runtime.world * config.optim.accum_steps != config.optim.batch_size or per_rank < 2:
        raise ConfigError(
            f"optim.batch_size {config.optim.batch_size} must split into at least 2 clips per process and "
            f"micro-step ({runtime.world} processes x {config.optim.accum_steps} accumulation steps)"
        )

    # Data: list, decode once into the frame cache (rank 0 first, the others then read it).
    videos = list_videos(config.data.source)
    frame_cache = FrameCache(
        config.data.cache_dir or out / "cache", config.data.fps, config.data.short_side, config.data.max_video_frames
    )
    segment_frames = max(config.data.min_clip_frames, round(config.data.segment_seconds * config.data.fps))
    if runtime.main:
        clips = build_clips(videos, frame_cache, segment_frames, config.data.min_clip_frames, config.run.progress)
    runtime.barrier()
    if not runtime.main:
        clips = build_clips(videos, frame_cache, segment_frames, config.data.min_clip_frames)
    if len(clips) < 2:
        raise DataError(
            f"training needs at least 2 clips, found {len(clips)}; add videos or lower data.segment_seconds"
        )
    logger.info("%d clips from %d videos (%d skipped)", len(clips), len(clips.videos), len(clips.skipped))

    # The frozen part: backbone + PCA (from --init or fitted here) and the teacher.
    backbone, pca, network, backbone_weights = _initial_model(config, clips, runtime, cache_dir)
    teacher = create_teacher(config.teacher.name, config.teacher.weights or None)
    encoder = ViewEncoder(
        backbone,
        pca,
        teacher,
        runtime.device,
        backbone_weights,
        config.model.crop,
        threads=config.run.threads or None,
        cache_dir=cache_dir,
    )

    batcher: CachedBatcher | OnlineBatcher
    cached_mode = config.cached.enabled if config.cached.enabled is not None else runtime.device.type == "cpu"
    if cached_mode:
        from model.train.feature_cache import CachedBatcher, FeatureCache, cache_key, encoder_fingerprint

        key = cache_key(
            clips,
            encoder_fingerprint(encoder, backbone),
            config.teacher.name,
            config.augment,
            config.cached.views_per_clip,
            config.run.seed,
        )
        cache = FeatureCache(config.cached.cache_dir or out / "feature-cache", key, config.cached.views_per_clip)
        cache.build(
            clips,
            encoder,
            config.augment,
            config.run.seed,
            runtime.rank,
            runtime.world,
            progress=config.run.progress and runtime.main,
        )
        runtime.barrier()
        batcher = CachedBatcher(cache, clips, config.augment, config.data.clip_frames, runtime.device)
    else:
        batcher = OnlineBatcher(clips, encoder, config.augment, config.data.clip_frames)

    eval_set = None
    eval_features: list[Tensor] = []  # filled, with eval_set, on the main rank when there is one
    if config.run.eval_manifest and runtime.main:
        eval_set = read_eval_manifest(config.run.eval_manifest)
        frozen = ModelBundle.training_free(pca, backbone=backbone, backbone_weights=backbone_weights)
        eval_features = encode_eval_set(eval_set, frozen, config.data.fps, cache_dir)

    network.to(runtime.device).train()
    scorer: nn.Module = PairwiseScorer(network)
    if runtime.distributed:
        scorer = nn.parallel.DistributedDataParallel(
            scorer, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None
        )
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    criterion = HapVRLoss(config.loss, config.loss_params)
    amp_dtype = None
    if config.run.amp and runtime.device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    # Resume.
    start_step, best_map, resumed_from, saved_schedule = 0, float("-inf"), None, 0
    if config.run.resume:
        start_step, best_map, resumed_from, saved_schedule = _load_state(
            config.run.resume, network, optimizer, scaler, runtime.device
        )
        logger.info("resumed from %s at step %d", resumed_from, start_step)
        if start_step >= config.optim.steps:
            logger.warning("the resumed run already reached optim.steps=%d", config.optim.steps)

    fingerprint = data_fingerprint(clips.videos)
    provenance_base = {
        "data": {
            "source": portable_path(config.data.source),
            "list_sha256": fingerprint,
            "videos": len(clips.videos),
            "skipped": [portable_path(p) for p, _ in clips.skipped],
            "clips": len(clips),
            "fps": config.data.fps,
        },
        "command": shlex.join(portable_words(command)),
        "seed": config.run.seed,
        "teacher": config.teacher.name,
        "mode": "cached-features" if cached_mode else "online",
        "batch_size": config.optim.batch_size,
        "clip_frames": config.data.clip_frames,
        "world_size": runtime.world,
        "init": portable_path(config.model.init) if config.model.init else None,
        "resumed_from": portable_path(resumed_from) if resumed_from else None,
        "config": "config.json",
    }
    log = None
    if runtime.main:
        write_config(config, out / "config.json")
        log = MetricsLog(out, start_step if config.run.resume else None)

    def bundle(step: int, metrics: dict[str, float]) -> ModelBundle:
        provenance = dict(provenance_base, steps=step, metrics=metrics)
        return ModelBundle(backbone, pca, _cpu_copy(network), "trained", provenance, backbone_weights)

    progress = None
    if runtime.main and config.run.progress:
        from tqdm import tqdm

        progress = tqdm(total=config.optim.steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    result = TrainResult(start_step, out / "last.safetensors", None)
    last_metrics: dict[str, float] = {}
    done = start_step
    clock = time.monotonic()
    if eval_set is not None and start_step == 0:
        # The untrained network's numbers, as the reference the run has to beat.
        assert log is not None, "evaluation runs on the main rank, which keeps the metrics log"
        metrics = evaluate(network, eval_features, eval_set, runtime.device)
        log.write(0, "eval", {**metrics.as_dict(), "seconds": 0.0})
        logger.info("step 0: mAP %.4f  µAP %.4f  R@1 %.4f", metrics.map, metrics.micro_ap, metrics.recall_at_1)
    # The schedule: optim.steps, or what a resumed run had fitted to its budget, or shorter once
    # the first steps are timed against this run's budget (model.train.budget).
    schedule_steps = saved_schedule or config.optim.steps
    budget = TimeBudget(budget_minutes(config.run.max_minutes, runtime.device.type), started=started)
    fit_pending = budget.limited and not saved_schedule
    if budget.limited:
        logger.info(
            "time budget %.1f minutes; the schedule is fitted to it after %d steps", budget.minutes, CALIBRATION_STEPS
        )
    end_step = schedule_steps
    if config.run.stop_after > 0:
        end_step = min(end_step, start_step + config.run.stop_after)
    last_save = time.monotonic()

    def checkpoint(step_done: int, loss: float) -> None:
        nonlocal last_save
        save_checkpoint(out / "last.safetensors", bundle(step_done, dict(last_metrics, loss=loss)))
        _save_state(out / STATE_FILE, network, optimizer, scaler, step_done, best_map, config, schedule_steps)
        last_save = time.monotonic()

    done = start_step
    try:
        while done < end_step:
            step = done
            warmup = fitted_warmup(config.optim.warmup_steps, schedule_steps, config.optim.steps)
            lr = learning_rate(step, config.optim.lr, warmup, schedule_steps, config.optim.min_lr_ratio)
            sums = _optimiser_step(
                step,
                lr,
                config,
                runtime,
                clips,
                per_rank,
                batcher,
                scorer,
                criterion,
                optimizer,
                scaler,
                network,
                amp_dtype,
            )
            done = step + 1
            if fit_pending and done - start_step == CALIBRATION_STEPS:
                fit_pending = False
                fitted = budget.fitted_end(done, CALIBRATION_STEPS, time.monotonic() - clock, schedule_steps)
                if fitted < schedule_steps:
                    logger.info(
                        "%.1f s a step: the schedule is shortened from %d to %d steps to fit %.1f minutes",
                        (time.monotonic() - clock) / CALIBRATION_STEPS,
                        schedule_steps,
                        fitted,
                        budget.minutes,
                    )
                    schedule_steps = fitted
                    end_step = min(end_step, fitted)
                    if progress is not None:
                        progress.total = end_step
            if not runtime.main:
                continue
            assert log is not None, "the main rank keeps the metrics log"
            row = {"lr": lr, **sums, "seconds": time.monotonic() - clock}
            result.losses.append({"step": done, **row})
            if progress is not None:
                progress.update(1)
                progress.set_postfix(
                    {k: f"{sums[k]:.3f}" for k in ("total", "infonce", "inner", "ap", "sshn", "reg")}, refresh=False
                )
            if done % config.run.log_every == 0 or done == end_step:
                log.write(done, "train", row)
            if eval_set is not None and (done % config.run.eval_every == 0 or done == schedule_steps):
                metrics = evaluate(network, eval_features, eval_set, runtime.device)
                last_metrics = metrics.as_dict()
                log.write(done, "eval", {**last_metrics, "seconds": time.monotonic() - clock})
                result.evaluations.append({"step": done, **last_metrics})
                logger.info(
                    "step %d: mAP %.4f  µAP %.4f  R@1 %.4f", done, metrics.map, metrics.micro_ap, metrics.recall_at_1
                )
                if metrics.map > best_map:
                    best_map = metrics.map
                    result.best_checkpoint = save_checkpoint(
                        out / "best.safetensors", bundle(done, dict(last_metrics, loss=sums["total"]))
                    )
            save_due = time.monotonic() - last_save >= config.run.save_minutes * 60
            if done % config.run.save_every == 0 or done == end_step or save_due:
                checkpoint(done, sums["total"])
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: keep what was learnt, so `--resume OUT` continues from here.
        result.interrupted = True
        if runtime.main and done > start_step:
            checkpoint(done, result.losses[-1]["total"] if result.losses else float("nan"))
        logger.warning("interrupted at step %d; checkpoint and state saved in %s", done, out)
    if progress is not None:
        progress.close()
    if log is not None:
        log.close()
    if runtime.main and done == start_step and not (out / "last.safetensors").is_file():
        # Resumed at or past the end: still leave a checkpoint behind.
        save_checkpoint(out / "last.safetensors", bundle(start_step, last_metrics))
    result.step = done
    result.schedule_steps = schedule_steps
    if result.best_checkpoint is None and (out / "best.safetensors").is_file():
        result.best_checkpoint = out / "best.safetensors"
    return result


def _optimiser_step(
    step: int,
    lr: float,
    config: TrainConfig,
    runtime: Runtime,
    clips,
    per_rank: int,
    batcher,
    scorer: nn.Module,
    criterion: HapVRLoss,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    network: nn.Module,
    amp_dtype: torch.dtype | None,
) -> dict[str, float]:
    """One optimiser step (over `accum_steps` micro-batches); returns the mean loss terms."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    sums = {name: 0.0 for name in LOSS_TERMS}
    for micro in range(config.optim.accum_steps):
        rng = np.random.default_rng([config.run.seed, step, runtime.rank, micro])
        clip_indices = [int(i) for i in rng.choice(len(clips), size=min(per_rank, len(clips)), replace=False)]
        batch = batcher.batch(clip_indices, rng)
        final = micro == config.optim.accum_steps - 1
        # The scorer is wrapped in DistributedDataParallel exactly when the run is distributed.
        ddp = scorer if isinstance(scorer, nn.parallel.DistributedDataParallel) else None
        sync = ddp.no_sync() if (ddp is not None and not final) else nullcontext()
        with sync:
            terms = batch_losses(scorer, criterion, batch, amp_dtype)
            scaler.scale(terms["total"] / config.optim.accum_steps).backward()
        for name in LOSS_TERMS:
            sums[name] += float(terms[name].detach()) / config.optim.accum_steps
    if config.optim.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), config.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if runtime.distributed:
        sums = _average_across(sums, runtime.device)
    if not all(math.isfinite(v) for v in sums.values()):
        raise FloatingPointError(f"loss became {sums['total']} at step {step + 1}; lower optim.lr or check the data")
    return sums


def _average_across(values: dict[str, float], device: torch.device) -> dict[str, float]:
    tensor = torch.tensor([values[k] for k in LOSS_TERMS], device=device, dtype=torch.float64)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(LOSS_TERMS, tensor.tolist()))


def _cpu_copy(network: HapVRSimilarity) -> HapVRSimilarity:
    copy = HapVRSimilarity(network.config)
    copy.load_state_dict({k: v.detach().cpu() for k, v in network.state_dict().items()})
    return copy.eval()


class _SimilarityOverrides(TypedDict):
    """The SimilarityConfig fields a training config sets."""

    rho_f: float
    rho_v: float
    symmetric: bool
    residual: bool


def _initial_model(config: TrainConfig, clips, runtime: Runtime, cache_dir: str | Path | None):
    """Backbone, PCA and the network to train: from --init, or a PCA fitted on the training frames."""
    similarity_overrides = _SimilarityOverrides(
        rho_f=config.model.rho_f,
        rho_v=config.model.rho_v,
        symmetric=config.model.symmetric,
        residual=config.model.residual,
    )
    if config.model.init:
        from model.checkpoint import CheckpointError

        try:
            start = load_checkpoint(config.model.init, config.model.backbone_weights or None)
        except CheckpointError as error:
            raise ConfigError(str(error)) from None
        similarity = SimilarityConfig(
            dim=start.pca.dim, regions=start.similarity.config.regions, **similarity_overrides
        )
        network = HapVRSimilarity(similarity)
        trained = start.similarity
        if trained.config.attention and trained.config.comparator:
            network.load_state_dict(trained.state_dict())  # continue from a trained network
        return start.backbone, start.pca, network, start.backbone_weights
    backbone_weights = config.model.backbone_weights or None
    pca_file = Path(config.run.out).expanduser() / "pca.safetensors"
    if runtime.main:
        pca = fit_pca(clips, config, backbone_weights, cache_dir)
        from safetensors.torch import save_file

        with atomic_path(pca_file) as temporary:
            save_file(pca.state_tensors(), str(temporary))
    runtime.barrier()
    if not runtime.main:
        from safetensors.torch import load_file

        from model.encoders.pca import PCAWhitening

        pca = PCAWhitening.from_state_tensors(load_file(str(pca_file)))
    network = HapVRSimilarity(SimilarityConfig(dim=pca.dim, **similarity_overrides))
    return config.model.backbone, pca, network, backbone_weights


def fit_pca(clips, config: TrainConfig, backbone_weights: str | None, cache_dir: str | Path | None = None):
    """PCA whitening fitted on un-augmented frames of the training clips (as the service sees them),
    about `model.pca_frames` of them spread evenly over the clips."""
    from model.encoders.frame_encoder import FrameEncoder
    from model.encoders.pca import fit_on_frames

    encoder = FrameEncoder(config.model.backbone, weights=backbone_weights, crop=config.model.crop, cache_dir=cache_dir)
    total = sum(clip.length for clip in clips.clips)
    stride = max(1, math.ceil(total / config.model.pca_frames))
    try:
        return fit_on_frames((clips.frames(clip)[::stride] for clip in clips.clips), encoder, dim=config.model.pca_dim)
    except ValueError as error:
        raise DataError(f"cannot fit PCA on the training frames: {error}") from None


def _save_state(
    path: Path,
    network: nn.Module,
    optimizer,
    scaler,
    step: int,
    best_map: float,
    config: TrainConfig,
    schedule_steps: int,
) -> None:
    state = {
        "step": step,
        "schedule_steps": schedule_steps,
        "best_map": best_map,
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "config": config.to_dict(),
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _load_state(
    resume: str, network: nn.Module, optimizer, scaler, device: torch.device
) -> tuple[int, float, Path, int]:
    """(step, best mAP, the state file, the schedule length it ran under: 0 when it kept optim.steps)."""
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise ConfigError(
            f"nothing to resume: {path} not found (give the output folder of an earlier run or its {STATE_FILE})"
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise ConfigError(f"cannot resume from {path}: {str(error).splitlines()[0]}") from None
    return int(state["step"]), float(state["best_map"]), path, int(state.get("schedule_steps", 0))
