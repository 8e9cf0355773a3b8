"""torchrun's contract with the processes it starts, read in one place.

torchrun (and torch.distributed.launch) sets RANK, WORLD_SIZE and LOCAL_RANK in each process's
environment; a plain `hapvr train` has none of them and runs as the only process.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DistributedEnv(BaseSettings):
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them (no prefix); None when not set."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    rank: int | None = Field(None, ge=0)
    world_size: int | None = Field(None, ge=1)
    local_rank: int | None = Field(None, ge=0)

    @property
    def distributed(self) -> bool:
        """Started by torchrun (even with one process): a process group and DDP are wanted."""
        return self.rank is not None and self.world_size is not None

    @property
    def main(self) -> bool:
        """Rank 0, or the only process: the one that logs, evaluates and writes checkpoints."""
        return (self.rank or 0) == 0
