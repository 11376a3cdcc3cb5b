"""A TCP proxy for fault injection: forwards a local port to a real server, and can cut and restore the line.

While cut, every connection through it has been dropped and nothing listens on its port, so new connections
are refused, exactly as when the server is down. Restoring listens on the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

from support import free_port


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = free_port()
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @classmethod
    def to_url(cls, url: str) -> TcpProxy:
        """A proxy to the host and port of ``url`` (``postgresql://…`` or ``amqp://…``)."""
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        return cls(parts.hostname, parts.port)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}"))

    @property
    def connections(self) -> int:
        """Client connections currently open through the proxy."""
        return len(self._writers) // 2

    async def start(self) -> None:
        """Listen (again)."""
        assert self._server is None
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        """Drop every connection and stop listening: new connections are refused until :meth:`restore`."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        """Accept connections again (and pass everything on)."""
        self._flowing.set()
        await self.start()

    def stall(self) -> None:
        """Keep connections open but stop passing the server's bytes on: its answers (confirms) are lost."""
        self._flowing.clear()

    def flow(self) -> None:
        """Pass the server's bytes on again (the held ones first)."""
        self._flowing.set()

    async def close(self) -> None:
        """Cut for good."""
        await self.cut()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        if self._server is None:  # cut while connecting
            client_writer.transport.abort()
            server_writer.transport.abort()
            return
        self.accepted += 1
        self._writers.update((client_writer, server_writer))
        for reader, writer, other in ((client_reader, server_writer, client_writer),
                                      (server_reader, client_writer, server_writer)):
            task = asyncio.create_task(self._pipe(reader, writer, other, from_server=reader is server_reader))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    other: asyncio.StreamWriter, *, from_server: bool) -> None:
        try:
            while data := await reader.read(65536):
                if from_server:
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (writer, other):
                self._writers.discard(end)
                end.transport.abort()


@contextlib.asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[TcpProxy]:
    """A started proxy to the server of ``url``, closed when the block ends."""
    proxy = TcpProxy.to_url(url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
