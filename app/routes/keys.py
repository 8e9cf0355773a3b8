"""/keys: create, list and revoke API keys (admin scope; `hapvr keys` does the same offline)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.deps import RequireAdmin, SessionDep
from app.routes.videos import INVALID
from app.schemas import Message
from indexer import api_keys
from indexer.errors import NotFound
from indexer.orm import Scope

router = APIRouter(prefix="/keys", tags=["keys"], dependencies=[RequireAdmin], responses=INVALID)

KEY_ID = Annotated[int, Path(ge=1, le=2**31 - 1, description="the key's id")]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field(description="read < write < admin; each includes the ones before it")
    name: str | None = Field(
        None,
        max_length=api_keys.NAME_MAX_CHARS,
        pattern=api_keys.NAME_PATTERN,
        description="what the key is for (no control characters)",
    )

    @field_validator("name")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class KeyPublic(BaseModel):
    """A key as listed: never the key itself, never its hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    scope: Scope
    name: str | None
    prefix: str | None = Field(description="the key's public start (hapvr_PREFIX_...); null for HAPVR_ADMIN_KEY")
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the key; shown in this answer only, store it now")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    # FastAPI parses the body before any dependency runs: bytes that are not UTF-8 JSON get 400.
    responses={400: {"model": Message, "description": "a body that is not UTF-8 JSON"}},
    summary="Create an API key",
)
def create_key(body: KeyCreate, session: SessionDep) -> KeyCreated:
    # A plain def, so the argon2 hash (a fraction of a second of CPU) runs off the event loop.
    new = api_keys.create_key(body.scope, body.name, session=session)
    return KeyCreated(**KeyPublic.model_validate(new.info).model_dump(), key=new.key)


@router.get("", response_model=KeysPublic, summary="List API keys, revoked ones included")
def list_keys(session: SessionDep) -> KeysPublic:
    keys = [KeyPublic.model_validate(info) for info in api_keys.list_keys(session=session)]
    return KeysPublic(data=keys, count=len(keys))


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Message, "description": "no key with this id"}}


@router.delete(
    "/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND, summary="Revoke an API key for good"
)
def revoke_key(key_id: KEY_ID, session: SessionDep) -> Response:
    if api_keys.revoke_key(key_id, session=session) is None:
        raise NotFound(f"API key {key_id} not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
