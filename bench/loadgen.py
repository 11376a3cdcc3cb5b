"""A lean HTTP/1.1 load generator for the benchmarks: keep-alive connections, one request at a time on each.

The contenders and the client share this machine's two cores, so the client's own cost is a tax on whoever is
measured. aiohttp's client spends ~300 µs of CPU per request; this one, a few tens, which leaves the cores to
the servers (both alike). It speaks just what the benchmarks need: ``POST`` a prebuilt body, read the status
and a ``Content-Length`` body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._length: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._answer is None:
            return
        if self._length is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self._buffer[:end]).lower().split(b"\r\n")
            del self._buffer[:end + 4]
            self._status = int(lines[0][9:12])
            self._length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
        if len(self._buffer) >= self._length:
            body = bytes(self._buffer[:self._length])
            del self._buffer[:self._length]
            answer, self._answer, self._length = self._answer, None, None
            answer.set_result((self._status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError(f"the server closed the connection: {exc!r}"))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer


class Client:
    """Up to ``connections`` keep-alive connections to one server; :meth:`post` waits for a free one."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str], connections: int) -> None:
        self._host, self._port = host, port
        self._head = "".join(f"{name}: {value}\r\n" for name, value in headers.items()
                             if name.lower() != "content-type")  # every body here is JSON
        self._free: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all: list[_Connection] = []
        self._size = connections

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``; the answer's status and body."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        request = (f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._head}{extra}"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        connection = await self._connection()
        try:
            answer = await connection.exchange(request)
        except BaseException:
            if connection.transport is not None:
                connection.transport.abort()
            self._all.remove(connection)
            raise
        self._free.put_nowait(connection)
        return answer

    async def _connection(self) -> _Connection:
        if self._free.empty() and len(self._all) < self._size:
            loop = asyncio.get_running_loop()
            _, connection = await loop.create_connection(_Connection, self._host, self._port)
            self._all.append(connection)
            return connection
        return await self._free.get()

    def close(self) -> None:
        """Close every connection."""
        for connection in self._all:
            if connection.transport is not None:
                connection.transport.close()


@contextlib.asynccontextmanager
async def client(url: str, headers: Mapping[str, str], connections: int) -> AsyncIterator[Client]:
    """A :class:`Client` of the server of ``url`` (``http://host:port``) for the duration of the block."""
    host, _, port = url.removeprefix("http://").partition("/")[0].partition(":")
    opened = Client(host, int(port or 80), headers, connections)
    try:
        yield opened
    finally:
        opened.close()
