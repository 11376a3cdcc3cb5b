"""Logging setup: structlog, as key-value lines for people or JSON lines for machines.

Lines of the standard library's logging (aio-pika, aiormq, asyncpg, aiohttp, yoyo...) go through the same
processors and renderer as cfv's own (structlog's ``ProcessorFormatter``), so in JSON mode every line is one JSON
object with ``timestamp``, ``level``, ``event`` and, for library lines, ``logger``, a traceback under
``exception``.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any, TextIO

import structlog

#: The id of the request being served (the gateway sets it): every line logged meanwhile carries it. A ContextVar
#: of its own rather than structlog's bound context vars: setting it costs a tenth as much, once per request.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def add_request_id(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """Processor: the current request's id, if any, as ``request_id``."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def enabled(level: int) -> bool:
    """Whether lines of ``level`` are logged (by structlog's configured filter)."""
    return bool(structlog.get_logger().bind().is_enabled_for(level))


def configure(level: str = "INFO", *, json: bool = False) -> None:
    """Route structlog and the standard library's logging through one renderer, to standard error (stdout is
    for what a command prints: a key, a table)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),  # the stream of the moment
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    if root.handlers:  # someone else set logging up (a test runner capturing it): leave it to them
        return
    handler = _Handler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer]))
    root.addHandler(handler)
    root.setLevel(level.upper())


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the standard error of the moment (not the one it was made with: it may have been replaced)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass
