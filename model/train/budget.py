"""A wall-clock budget for a training run, and the schedule that fits it.

The published schedule (30k steps of 64 clips) takes days on a CPU. With a budget (counted
from the start of the run, data preparation included), the run times its first few steps and
shortens the schedule so that warm-up and the cosine decay both end inside the budget: the last
checkpoint is then a finished schedule, not a run cut off at its highest learning rate. On CUDA
no budget applies unless one is given.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

# Minutes a run on a CPU may take when `run.max_minutes` is not given.
CPU_DEFAULT_MINUTES = 20.0
# Steps timed before the schedule is fitted to the budget (the first ones are slower: warm caches).
CALIBRATION_STEPS = 3


def budget_minutes(configured: float | None, device_type: str) -> float | None:
    """The budget in minutes: as configured (0 = none), else CPU_DEFAULT_MINUTES on a CPU, none on a GPU."""
    if configured is None:
        return CPU_DEFAULT_MINUTES if device_type == "cpu" else None
    return configured if configured > 0 else None


@dataclass
class TimeBudget:
    minutes: float | None  # None: no limit
    started: float = field(default_factory=time.monotonic)

    @property
    def limited(self) -> bool:
        return self.minutes is not None

    def remaining_s(self) -> float:
        return math.inf if self.minutes is None else self.minutes * 60.0 - (time.monotonic() - self.started)

    def expired(self) -> bool:
        return self.remaining_s() <= 0

    def fitted_end(self, done: int, steps_timed: int, seconds: float, planned_end: int) -> int:
        """The last step the budget allows: `done` plus what the remaining time holds at the
        measured pace (`seconds` for the last `steps_timed` steps), never past `planned_end`."""
        if self.minutes is None or steps_timed <= 0:
            return planned_end
        per_step = max(seconds / steps_timed, 1e-6)
        return max(done + 1, min(planned_end, done + int(self.remaining_s() / per_step)))


def fitted_warmup(warmup_steps: int, schedule_steps: int, planned_steps: int) -> int:
    """Warm-up of a shortened schedule: the configured one, at most a tenth of the shortened run."""
    if schedule_steps >= planned_steps:
        return warmup_steps
    return min(warmup_steps, max(1, schedule_steps // 10))
