"""HTTP connections that answer a request aiohttp cannot parse (a request line or header over 8,190 bytes,
bytes that are not HTTP) in JSON, in the error shape of the face it was sent to, and log one line for it.

aiohttp answers such requests itself, before any middleware runs: ``text/plain`` and a traceback at error
level each, an easy way for any client to flood the logs. It offers no hook for that answer, so the gateway
runs its own subclass of aiohttp's connection handler (:class:`GatewayRunner` installs it).
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from cfv.gateway.errors import render_error

log = structlog.get_logger("cfv.gateway")

#: The start of a request: a method token, a space, the start of a path.
_REQUEST_START = re.compile(rb"[A-Z]{3,10} (/\S{0,40})")


class _Connection(RequestHandler):
    """aiohttp's connection handler, remembering where the latest request was going (the start of its
    path, to pick the face's error shape) and whether its request line was complete."""

    _path = ""
    _line_length = 0  # of the latest request line, so far
    _line_open = False

    def data_received(self, data: bytes) -> None:
        start = _REQUEST_START.match(data)
        if start is not None:
            self._path = start.group(1).decode("latin-1")
            self._line_length = 0
            self._line_open = True
        if self._line_open:
            end = data.find(b"\n")
            self._line_open = end < 0
            self._line_length += len(data) if end < 0 else end
        super().data_received(data)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        status, text = _refusal(exc, self._line_length)
        # The client's mistake, not ours: one line, without the offending bytes (a header may hold a key).
        log.info("malformed request refused", status=status, error=type(exc).__name__,
                 remote=request.remote)
        response = render_error(self._path, status, [{"type": "bad_request", "message": text, "field": None}])
        response.force_close()
        return response


def _refusal(exc: HttpProcessingError, line_length: int) -> tuple[int, str]:
    if isinstance(exc, LineTooLong):
        limit = int(exc.args[1]) if len(exc.args) > 1 and str(exc.args[1]).isdigit() else 8190
        if line_length > limit:
            return 400, f"the request line is longer than {limit} bytes"
        return 431, f"a request header is longer than {limit} bytes"
    return 400, f"the request is not valid HTTP/1.1: {exc.message[:200]}"


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections answer unparseable requests as the faces do."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the app's own server, built by aiohttp; only its connections change
        return server

