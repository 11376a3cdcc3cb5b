"""Logging setup: structlog, as key-value lines for people or JSON lines for machines."""

from __future__ import annotations

import logging

import structlog


def configure(level: str = "INFO", *, json: bool = False) -> None:
    """Route structlog and the standard library's logging through one renderer."""
    logging.basicConfig(level=level.upper(), format="%(message)s")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
    )
