"""API keys in the catalog: made, hashed with argon2, found, listed and revoked.

A key made here reads `hapvr_<prefix>_<secret>`: the 12-hex-digit prefix is public and finds the
row, and only the argon2 hash of the whole key is stored, so the catalog never holds a usable
key. A key from elsewhere (HAPVR_ADMIN_KEY, any 32+ characters) is stored without a prefix and
found by trying the hash of each such row (normally one).

Like indexer.catalog, each function takes its session as a keyword argument and leaves
committing to the caller.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from indexer.orm import ApiKey, Scope, utcnow

log = logging.getLogger(__name__)

KEY_START = "hapvr_"
_KEY_SHAPE = re.compile(r"hapvr_([0-9a-f]{12})_[A-Za-z0-9_-]{20,}")

# OWASP's argon2id minimum (19 MiB, 2 passes): 0.17 s per hash on the 2-core box, against 0.85 s
# for argon2-cffi's default. Keys are random, so the cost only has to defeat guessing a key from
# a stolen hash; the API verifies a key once per process and then remembers it (app/auth.py).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Key of the PostgreSQL advisory lock taken while the first admin key is made, so replicas that
# start together make one, not one each ("hapk").
_BOOTSTRAP_LOCK_KEY = 0x6861706B

# The name the key from HAPVR_ADMIN_KEY is listed under.
ENV_KEY_NAME = "HAPVR_ADMIN_KEY"

# A key's name: text without control characters (PostgreSQL cannot store NUL), as the API's schema
# and `hapvr keys create --name` both say.
NAME_MAX_CHARS = 200
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_CHARS and re.fullmatch(NAME_PATTERN, name) is not None


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key, never its hash."""

    id: int
    scope: Scope
    name: str | None
    prefix: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(row.id, Scope(row.scope), row.name, row.prefix, row.created_at, row.revoked_at)


@dataclass(frozen=True)
class NewKey:
    info: KeyInfo
    key: str  # the key itself: shown once, stored nowhere


def generate_key() -> str:
    """A fresh key: `hapvr_`, a public 12-hex-digit prefix, then 256 random bits."""
    return f"{KEY_START}{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def prefix_of(key: str) -> str | None:
    """The public prefix of a key made by hapvr; None for any other string."""
    match = _KEY_SHAPE.fullmatch(key)
    return match.group(1) if match else None


def create_key(scope: Scope, name: str | None = None, *, session: Session, key: str | None = None) -> NewKey:
    """Store a new key (generated unless given) and return it with its row."""
    key = key or generate_key()
    row = ApiKey(prefix=prefix_of(key), key_hash=_HASHER.hash(key), scope=scope.value, name=name)
    session.add(row)
    session.flush()
    return NewKey(KeyInfo.of(row), key)


def list_keys(*, session: Session) -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first."""
    return [KeyInfo.of(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def get_key(key_id: int, *, session: Session) -> KeyInfo | None:
    row = session.get(ApiKey, key_id)
    return KeyInfo.of(row) if row is not None else None


def revoke_key(key_id: int, *, session: Session) -> KeyInfo | None:
    """Revoke a key for good (revoking twice keeps the first time); None if there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return KeyInfo.of(row)


def find_key(key: str, *, session: Session) -> KeyInfo | None:
    """The row whose hash matches `key`, revoked or not; None if no row does.

    A key of hapvr's shape costs one argon2 verification against the row of its prefix (none if
    the prefix is unknown); any other string is tried against the rows without a prefix.
    """
    prefix = prefix_of(key)
    where = ApiKey.prefix == prefix if prefix is not None else ApiKey.prefix.is_(None)
    for row in session.scalars(select(ApiKey).where(where).order_by(ApiKey.id)):
        if _matches(row.key_hash, key):
            return KeyInfo.of(row)
    return None


def _matches(key_hash: str, key: str) -> bool:
    try:
        return _HASHER.verify(key_hash, key)
    except (VerificationError, InvalidHashError):  # a mismatch, or a hash this code cannot read
        return False


def ensure_admin_key(admin_key: str | None, *, session: Session) -> NewKey | None:
    """Make sure the service can be administered once keys are required.

    With `admin_key` (HAPVR_ADMIN_KEY), store its hash unless the catalog already has it (a
    revoked one stays revoked). Without it, make an admin key when no active one exists and
    return it, for the caller to show once. Replicas starting together take turns (PostgreSQL
    advisory lock), so at most one key is made.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _BOOTSTRAP_LOCK_KEY})
    if admin_key is not None:
        found = find_key(admin_key, session=session)
        if found is None:
            created = create_key(Scope.admin, ENV_KEY_NAME, session=session, key=admin_key)
            log.info("added the admin key from %s as key %d", ENV_KEY_NAME, created.info.id)
        elif not found.active:
            log.warning("the key in %s was revoked (key %d); it stays revoked", ENV_KEY_NAME, found.id)
        elif found.scope is not Scope.admin:
            log.warning("the key in %s is key %d, of scope %s, not admin", ENV_KEY_NAME, found.id, found.scope.value)
        return None
    active_admin = select(ApiKey.id).where(ApiKey.scope == Scope.admin.value, ApiKey.revoked_at.is_(None)).limit(1)
    if session.scalar(active_admin) is not None:
        return None
    return create_key(Scope.admin, "first admin key", session=session)
