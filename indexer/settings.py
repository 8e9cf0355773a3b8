"""The one settings object of the service.

Every knob comes from here: environment variables with the `HAPVR_` prefix, overridden by
keyword arguments (the CLI flags). Nothing else in the project reads the environment, so a
component's behaviour is fully described by the `Settings` it was handed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from model.settings import ModelSettings

MiB = 1024 * 1024

# Hosts that only this machine can reach: the one case where auth may default to off.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# An admin key from the environment must be at least this long, and not a placeholder.
MIN_ADMIN_KEY_CHARS = 32
_PLACEHOLDER_WORDS = ("change", "example", "placeholder", "replace", "password", "secret", "your", "xxxx", "todo")


class Settings(ModelSettings):
    """Configuration of the service, its API replicas and workers: ModelSettings' knobs (checkpoint,
    fps, runtime, cache_dir) plus the service's own. The one settings object of every component."""

    # hide_input_in_errors: a refused value may be a secret (admin key, database password); errors reach logs.
    model_config = SettingsConfigDict(
        env_prefix="HAPVR_", extra="forbid", validate_default=True, hide_input_in_errors=True
    )

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
    database_wait_s: float = Field(
        60.0, ge=0, description="how long `hapvr migrate` retries a catalog database it cannot reach"
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
    max_attempts: int = Field(3, ge=1, description="runs ending in an unexpected error before a video is failed")
    max_interruptions: int = Field(
        10, ge=1, description="runs cut short by the process dying (not the video's fault) before a video is failed"
    )
    index_threshold: int | None = Field(
        None, gt=0, description="frame vectors past which the index turns approximate; default: the indexer's"
    )

    feature_format: Literal["int4", "float16"] = Field(
        "int4",
        description="how new region features are stored for the re-rank: int4 (140 KB per video-minute) or "
        "float16 (680 KB, no decoding); files of either format are always read",
    )

    # The frame index: FAISS inside each process, or a Milvus collection every process shares.
    vector_index: Literal["faiss", "milvus"] = Field(
        "faiss",
        description="faiss: an in-memory index per process (replicas follow Redis events); milvus: one shared collection",
    )
    milvus_uri: str | None = Field(
        None,
        description="Milvus: a local path (milvus-lite, one process) or http://host:19530 (a server); "
        "default: data_dir/milvus.db",
    )
    milvus_collection: str = Field(
        "hapvr_frames", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$", description="the Milvus collection of frame vectors"
    )
    milvus_index_type: Literal["HNSW", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN"] = Field(
        "HNSW", description="Milvus vector index kind (IVF_PQ and DISKANN need a server)"
    )
    milvus_timeout_s: float = Field(10.0, gt=0, description="seconds a Milvus call may take before the API answers 503")

    # Search.
    candidates: int = Field(100, gt=0, description="videos re-ranked exactly per query (C)")
    default_k: int = Field(20, gt=0)
    max_k: int = Field(1000, gt=0)
    search_threads: int = Field(2, gt=0, description="searches computed at once (more wait their turn)")
    # Admission (app/admission.py): work in progress is bounded, and past the bound a request gets 503
    # with Retry-After at once, so the searches taken keep a bounded latency.
    search_queue: int = Field(
        16, ge=0, description="searches by video waiting for one of the search_threads; more get 503"
    )
    clip_searches: int = Field(
        1, gt=0, description="clip searches at once, upload excluded (embedding a clip costs as much as indexing it)"
    )
    clip_queue: int = Field(2, ge=0, description="clip searches uploading or waiting for their turn; more get 503")
    max_clip_frames: int = Field(
        600, gt=0, description="frames a search clip may give at the sampling rate (600: 10 min at 1 fps); longer: 422"
    )

    # The client commands (hapvr ingest, search, duplicates with --api): the service and its key.
    api_url: str = Field("http://127.0.0.1:8000", description="the service the client commands talk to")
    api_key: SecretStr | None = Field(None, description="API key the client commands send (where keys are required)")

    # Match graph (indexer/match_graph.py): each indexed video's best hits, read by /duplicates.
    graph_neighbours: int = Field(20, gt=0, description="hits of each video's search stored as match-graph edges")
    graph_min_score: float | None = Field(None, description="hits scoring lower are not stored; default: all")
    # Copies by default: partial and duplicate matches (README, API: search scores and tiers).
    duplicates_tier: Literal["duplicate", "partial", "related"] = Field(
        "partial", description="tier (or a stronger one) of /duplicates when neither min_score nor tier is asked for"
    )

    # Access control (app/auth.py): API keys, scopes, per-key rate limits, CORS.
    auth: Literal["off", "required"] | None = Field(
        None, description="API keys: off or required; default: off only for the embedded mode on a loopback host"
    )
    admin_key: SecretStr | None = Field(
        None, description="an admin API key added to the catalog at start (at least 32 random characters)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed to call the API from a browser (comma-separated)"
    )
    rate_limit_read: str = Field("600/minute", description="requests per key to read routes (limits notation)")
    rate_limit_write: str = Field("120/minute", description="requests per key to write routes")
    rate_limit_admin: str = Field("60/minute", description="requests per key to admin routes")
    rate_limit_auth_failures: str = Field(
        "30/minute", description="requests with a wrong key per client address, before 429"
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Resolved once so that a later chdir never moves the data.
        return value.expanduser().resolve()

    @field_validator("admin_key", "api_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("admin_key")
    @classmethod
    def _real_key(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the key: settings errors end up in logs.
        if value is None:
            return None
        key = value.get_secret_value()
        if len(key) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(f"the admin key must be at least {MIN_ADMIN_KEY_CHARS} characters (openssl rand -hex 32)")
        if len(set(key)) < 10 or any(word in key.lower() for word in _PLACEHOLDER_WORDS):
            raise ValueError("the admin key looks like a placeholder; use random characters (openssl rand -hex 32)")
        if not (key.isascii() and key.isprintable()) or " " in key:
            raise ValueError("the admin key must be printable ASCII without spaces (it travels in a header)")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("rate_limit_read", "rate_limit_write", "rate_limit_admin", "rate_limit_auth_failures")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # raises ValueError naming the string it could not read
        return value

    @property
    def auth_required(self) -> bool:
        """API keys are required unless switched off, or by default on the embedded mode on loopback."""
        if self.auth is not None:
            return self.auth == "required"
        return self.deployed or self.host not in LOOPBACK_HOSTS

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
    def milvus_location(self) -> str:
        """The Milvus URI in use: the configured one, or a milvus-lite directory inside data_dir."""
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def thumbnails_dir(self) -> Path:
        return self.data_dir / "thumbnails"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same file system as uploads, so finished files move atomically."""
        return self.data_dir / "tmp"
