"""Self-supervised training of the HAP-VR similarity network (`hapvr train`, ARCHITECTURE.md section 6).

command (CLI) -> config (settings) -> loop (optimiser, schedule, DDP, logging, evaluation,
checkpoints) over batches from batch.OnlineBatcher (augment + encode every step) or
feature_cache.CachedBatcher (pre-encoded augmented views); data (videos, frame cache, clips),
augment (weak and strong views), teacher (frozen frame encoder for pseudo labels).
"""
