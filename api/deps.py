"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.queue import JobQueue
from api.settings import Settings

log = logging.getLogger(__name__)


async def get_settings(request: Request) -> Settings:  # no I/O: on the loop, no thread hop
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session. The request boundary owns the transaction: handlers commit
    what they mean to keep.

    Made and closed on the event loop: a session opens no connection before its first
    statement, and closing one that holds none does no I/O. Only a session still inside
    a transaction (a read, a refused request) is closed in a thread. A sync dependency
    costs a thread hop each way, about as much CPU as a query (issue 16).
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            with anyio.CancelScope(shield=True):  # a client that left still frees its connection
                await anyio.to_thread.run_sync(_close, session)
        else:
            _close(session)


def _close(session: Session) -> None:
    """Close, ending the transaction. The answer is decided by now (often already sent):
    a database that went away meanwhile (its ROLLBACK fails) costs the connection, never
    the answer -- it would reach the client as a 500 or a broken stream."""
    try:
        session.close()
    except SQLAlchemyError as exc:
        log.warning("could not end a request's transaction: %s", exc)
        session.invalidate()  # its connection is not trusted again


async def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
