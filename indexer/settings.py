"""The one settings object of the service.

Every knob comes from here: environment variables with the `HAPVR_` prefix, overridden by
keyword arguments (the CLI flags). Nothing else in the project reads the environment, so a
component's behaviour is fully described by the `Settings` it was handed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from model.settings import ModelSettings

MiB = 1024 * 1024


class Settings(ModelSettings):
    """Configuration of the service, its API replicas and workers: ModelSettings' knobs (checkpoint,
    fps, runtime, cache_dir) plus the service's own. The one settings object of every component."""

    model_config = SettingsConfigDict(env_prefix="HAPVR_", extra="forbid", validate_default=True)

    # Where and how to listen.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    # Storage. Everything the service writes lives under data_dir unless a URL says otherwise.
    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the catalog; default: a SQLite file in data_dir",
        # Platforms hand out plain DATABASE_URL/REDIS_URL; set one name per value, not both.
        validation_alias=AliasChoices("database_url", "HAPVR_DATABASE_URL", "DATABASE_URL"),
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (job queue and index events); set with database_url it selects the deployed mode",
        validation_alias=AliasChoices("redis_url", "HAPVR_REDIS_URL", "REDIS_URL"),
    )
    redis_prefix: str = Field(
        "hapvr", min_length=1, description="prefix of the Redis queue, keys and event channel of this deployment"
    )

    # Uploads.
    max_upload_bytes: int = Field(2048 * MiB, gt=0, description="larger uploads are refused with 413")
    max_field_bytes: int = Field(64 * 1024, gt=0, description="limit of each text form field")
    # An upload's metadata (a JSON object). Python's JSON parser recurses once per level and its
    # int() is quadratic in the digits, so both are bounded before parsing, not after.
    max_metadata_bytes: int = Field(16 * 1024, gt=0, description="metadata JSON text longer than this is refused")
    max_metadata_depth: int = Field(
        16, ge=1, le=100, description="nesting of objects and arrays in metadata (the object itself is level 1)"
    )
    max_metadata_int_digits: int = Field(
        19, ge=1, le=4000, description="digits of the longest integer in metadata (19 covers 64-bit integers)"
    )

    # Decoding (see model.video.DecodeLimits; the sampling rate `fps` is a ModelSettings knob).
    max_frames: int = Field(7200, gt=0)
    max_pixels: int = Field(8192 * 8192, gt=0, description="width * height of the source")
    max_duration_s: float = Field(4 * 3600.0, gt=0)

    # Indexing.
    workers: int = Field(1, ge=0, description="in-process indexer threads (0: queue only)")
    max_attempts: int = Field(3, ge=1, description="attempts before an interrupted job is failed")
    index_threshold: int | None = Field(
        None, gt=0, description="frame vectors past which the index turns approximate; default: the indexer's"
    )

    # Search.
    candidates: int = Field(100, gt=0, description="videos re-ranked exactly per query (C)")
    default_k: int = Field(20, gt=0)
    max_k: int = Field(1000, gt=0)
    search_threads: int = Field(2, gt=0, description="searches computed at once (more wait their turn)")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Resolved once so that a later chdir never moves the data.
        return value.expanduser().resolve()

    @property
    def catalog_url(self) -> str:
        """The catalog URL in use: the configured one, or SQLite inside data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'catalog.sqlite3'}"

    @property
    def deployed(self) -> bool:
        """Deployed mode (shared catalog, Redis queue, workers in their own processes) vs embedded."""
        return self.redis_url is not None

    @property
    def model_cache_dir(self) -> Path:
        """The service keeps its derived model files with its data: cache_dir, else data_dir/cache."""
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same file system as uploads, so finished files move atomically."""
        return self.data_dir / "tmp"
