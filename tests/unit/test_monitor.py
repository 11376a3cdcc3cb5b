"""The monitoring port (issue 12): probes over injected checks, and a port already taken is logged, not fatal."""

from __future__ import annotations

import asyncio

import aiohttp
from cfv.monitor import Monitor
from support import captured_logs, free_port


async def _fails() -> None:
    raise ConnectionRefusedError


async def _hangs() -> None:
    await asyncio.sleep(30)


async def _answers() -> None:
    return None


async def test_readyz_names_each_failing_part_and_livez_answers() -> None:
    port = free_port()
    monitor = Monitor("127.0.0.1", port, {"postgres": _answers, "rabbitmq": _fails, "redis": _hangs})
    await monitor.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                assert answer.status == 503
                assert await answer.json() == {"status": "unready", "checks": {
                    "postgres": "ok", "rabbitmq": "unreachable: ConnectionRefusedError",
                    "redis": "unreachable: TimeoutError"}}
            async with http.get(f"http://127.0.0.1:{port}/livez") as answer:
                assert (answer.status, await answer.json()) == (200, {"status": "ok"})
    finally:
        await monitor.close()


async def test_a_taken_port_is_logged_and_the_process_runs_on() -> None:
    port = free_port()
    first, second = Monitor("127.0.0.1", port, {}), Monitor("127.0.0.1", port, {})
    await first.start()
    try:
        with captured_logs() as logged:
            await second.start()  # does not raise
        assert [e["port"] for e in logged if e["log_level"] == "warning"] == [port]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as answer:
            assert answer.status == 200
            assert "process_cpu_seconds_total" in await answer.text()
    finally:
        await second.close()
        await first.close()

