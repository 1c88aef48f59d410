"""A delaying TCP proxy: a slow link (a render node in another building or region) in front of a Redis, for the
slow-link test and the benchmarks (scripts/bench_slowlink.py, scripts/bench_status.py)."""
from __future__ import annotations

import asyncio
import threading

from httpov.local_farm import free_port


class DelayProxy:
    """A TCP proxy on 127.0.0.1 to `target_port` that holds every chunk `delay` seconds before passing it on, each
    way. Chunks keep their order and the link its bandwidth: only latency is added (a pipeline of commands costs one
    round trip, as on a real link). Its asyncio loop runs in a thread; `url` is where to connect. `delay` may be
    changed at any time (a chunk keeps the delay it arrived under). Use as a context manager."""

    def __init__(self, target_port: int, delay: float, port: int | None = None) -> None:
        self.target_port, self.delay = target_port, delay
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> DelayProxy:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the delaying proxy did not start")
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()  # no connection accepted any more
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()
        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(10)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w),
                                 return_exceptions=True)
        except asyncio.CancelledError:  # the proxy stops
            for writer in (client_w, server_w):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await held.get()
                if not chunk:
                    break
                wait = due - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                held.put_nowait((self._loop.time() + self.delay, chunk))
                if not chunk:
                    break
        except OSError:
            held.put_nowait((0.0, b""))
        await sender


def delaying_proxy(target_port: int, delay: float) -> int:
    """A DelayProxy to `target_port` adding `delay` seconds each way, left running for the life of the process;
    answers its port."""
    return DelayProxy(target_port, delay).start().port
