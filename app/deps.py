"""Typed dependencies shared by the routes: a route's signature says what it needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.components import Components
from app.db import session_scope
from app.library import Library
from app.runtime import Runtime
from app.settings import Settings


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_settings(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Settings:
    return runtime.settings


def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    with session_scope(runtime.sessions) as session:
        yield session


def get_library(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Library:
    """The loaded index and store; 503 while start-up is still loading them."""
    return runtime.require_library()


def get_components(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Components:
    return runtime.require_components()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
LibraryDep = Annotated[Library, Depends(get_library)]
ComponentsDep = Annotated[Components, Depends(get_components)]
